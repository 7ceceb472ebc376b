/**
 * The API's TLS certificate: the user's when given, otherwise a self-signed
 * one created on first start, as Proxmox VE does with pve-ssl.pem.
 */
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
