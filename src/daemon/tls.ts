/**
 * The API's TLS certificate: the user's when given, otherwise a self-signed
 * one created on first start, as Proxmox VE does with pve-ssl.pem. The API
 * reads it again on SIGHUP, so a renewed certificate needs no restart, and
 * warns ahead of its expiry.
 */
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import os from 'node:os';
import selfsigned from 'selfsigned';
import { writeFileAtomic } from '../files/atomic.js';

export interface TlsMaterial {
  cert: string;
  key: string;
  created: boolean;
}

async function readIfPresent(file: string): Promise<string | null> {
  try {
    return await fsp.readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw error;
  }
}

/** The key is 0600, or 0640 for `gid` so the unprivileged API daemon can read it. */
export async function ensureCertificate(
  certPath: string,
  keyPath: string,
  gid?: number,
): Promise<TlsMaterial> {
  const [cert, key] = await Promise.all([readIfPresent(certPath), readIfPresent(keyPath)]);
  if (cert !== null && key !== null) return { cert, key, created: false };
  if (cert !== null || key !== null) {
    throw new Error(`only one of ${certPath} and ${keyPath} exists; give both or neither`);
  }
  const notBefore = new Date(Date.now() - 60_000);
  const notAfter = new Date(notBefore);
  notAfter.setFullYear(notAfter.getFullYear() + 2);
  const pems = await selfsigned.generate([{ name: 'commonName', value: os.hostname() }], {
    keyType: 'ec',
    curve: 'P-256',
    algorithm: 'sha256',
    notBeforeDate: notBefore,
    notAfterDate: notAfter,
    extensions: [
      { name: 'basicConstraints', cA: false },
      {
        name: 'subjectAltName',
        altNames: [
          { type: 2, value: os.hostname() },
          { type: 2, value: 'localhost' },
          { type: 7, ip: '127.0.0.1' },
          { type: 7, ip: '::1' },
        ],
      },
    ],
  });
  await writeFileAtomic(
    keyPath,
    pems.private,
    gid === undefined ? { mode: 0o600 } : { mode: 0o640, gid },
  );
  await writeFileAtomic(certPath, pems.cert, { mode: 0o644 });
  return { cert: pems.cert, key: pems.private, created: true };
}

/** How long before expiry the daemon starts warning: renewals usually run 30 days ahead. */
export const EXPIRY_WARNING_DAYS = 30;
const DAY_MS = 86_400_000;

export interface LoadedCertificate {
  cert: Buffer;
  key: Buffer;
  notAfter: Date;
  fingerprint256: string;
}

/**
 * Reads and checks the pair before any worker is given it: both parse, and the
 * key belongs to the certificate. A reload with a half-copied renewal then
 * fails here, in the primary, and the running workers keep the old pair.
 */
export async function loadCertificate(
  certPath: string,
  keyPath: string,
): Promise<LoadedCertificate> {
  const [cert, key] = await Promise.all([fsp.readFile(certPath), fsp.readFile(keyPath)]);
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(cert);
  } catch (error) {
    throw new Error(`${certPath} is not a PEM certificate: ${(error as Error).message}`);
  }
  let matches = false;
  try {
    matches = x509.checkPrivateKey(createPrivateKey(key));
  } catch (error) {
    throw new Error(`${keyPath} is not a PEM private key: ${(error as Error).message}`);
  }
  if (!matches) throw new Error(`${keyPath} is not the key of ${certPath}`);
  return { cert, key, notAfter: new Date(x509.validTo), fingerprint256: x509.fingerprint256 };
}

/** The warning to log about a certificate valid until `notAfter`, or null while it is far off. */
export function expiryWarning(
  notAfter: Date,
  now = new Date(),
): { level: 'warn' | 'error'; message: string; days: number } | null {
  const days = Math.floor((notAfter.getTime() - now.getTime()) / DAY_MS);
  if (notAfter.getTime() <= now.getTime()) {
    return { level: 'error', message: 'the API certificate has expired', days };
  }
  if (days < EXPIRY_WARNING_DAYS) {
    return { level: 'warn', message: `the API certificate expires in ${days} days`, days };
  }
  return null;
}
