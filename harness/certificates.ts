/**
 * A throwaway certificate authority for tests, made with the npm `selfsigned`
 * package (a dependency already, so CI needs no openssl): a CA, a server
 * certificate for loopback (SANs 127.0.0.1, ::1, localhost) and client
 * certificates, all signed by it, written as PEM files into a directory.
 * EC P-256 keys: generated in milliseconds, where RSA takes a busy machine
 * seconds.
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import selfsigned from 'selfsigned';

export interface CertificatePair {
  cert: string;
  key: string;
}

export interface TestCa {
  /** The CA certificate's file, for `--trusted-ca-file` or the client's `tls.ca`. */
  caFile: string;
  /** A server certificate valid for 127.0.0.1, ::1 and localhost. */
  server: CertificatePair;
  /** A client certificate with this common name (etcd takes the CN as the user when no password is given). */
  client(commonName: string): Promise<CertificatePair>;
}

const EC = { keyType: 'ec', curve: 'P-256', algorithm: 'sha256' } as const;

function validity(): { notBeforeDate: Date; notAfterDate: Date } {
  // An hour back: a clock a little behind on the verifying side still accepts it.
  const notBeforeDate = new Date(Date.now() - 3_600_000);
  return { notBeforeDate, notAfterDate: new Date(notBeforeDate.getTime() + 2 * 86_400_000) };
}

/** Makes a CA named `name` and a server certificate in `dir` (files `<name>-*.pem`). */
export async function makeTestCa(dir: string, name = 'test-ca'): Promise<TestCa> {
  const ca = await selfsigned.generate(
    [{ name: 'commonName', value: `${name} (token-shadow tests)` }],
    {
      ...EC,
      ...validity(),
      extensions: [
        { name: 'basicConstraints', cA: true, critical: true },
        {
          name: 'keyUsage',
          keyCertSign: true,
          cRLSign: true,
          digitalSignature: true,
          critical: true,
        },
      ],
    },
  );
  const signer = { key: ca.private, cert: ca.cert };
  const caFile = path.join(dir, `${name}.pem`);
  writeFileSync(caFile, ca.cert);
  const issue = async (
    file: string,
    commonName: string,
    usage: { serverAuth?: boolean; clientAuth?: boolean },
    altNames: Array<{ type: 2; value: string } | { type: 7; ip: string }>,
  ): Promise<CertificatePair> => {
    const pems = await selfsigned.generate([{ name: 'commonName', value: commonName }], {
      ...EC,
      ...validity(),
      ca: signer,
      extensions: [
        { name: 'basicConstraints', cA: false },
        { name: 'keyUsage', digitalSignature: true, keyEncipherment: true },
        { name: 'extKeyUsage', ...usage },
        ...(altNames.length > 0 ? [{ name: 'subjectAltName' as const, altNames }] : []),
      ],
    });
    const pair = { cert: path.join(dir, `${file}.pem`), key: path.join(dir, `${file}-key.pem`) };
    writeFileSync(pair.cert, pems.cert);
    writeFileSync(pair.key, pems.private, { mode: 0o600 });
    return pair;
  };
  // clientAuth too: etcd's own gRPC gateway dials the member with this pair (without it the
  // member logs 'rejected connection ... incompatible key usage').
  const server = await issue(
    `${name}-server`,
    'localhost',
    { serverAuth: true, clientAuth: true },
    [
      { type: 7, ip: '127.0.0.1' },
      { type: 7, ip: '::1' },
      { type: 2, value: 'localhost' },
    ],
  );
  return {
    caFile,
    server,
    client: (commonName) =>
      issue(`${name}-client-${commonName}`, commonName, { clientAuth: true }, []),
  };
}
