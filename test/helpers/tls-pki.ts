// A private CA for tests of TLS upstreams: a server certificate for 127.0.0.1 and localhost, and
// an mTLS client certificate, issued by Customs' own `certs` code and written as PEM files.

import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { createCa, issueClientCert, issueServerCert, loadCa } from '../../src/tls/certs.js'

/** The files {@link makeTestPki} writes, absolute paths, and their PEM text. */
export interface TestPki {
  readonly dir: string
  /** The CA certificate: what an upstream's `tls.ca` names, and a registry's `clientcas`. */
  readonly caFile: string
  /** The server certificate followed by the CA's, for 127.0.0.1 and localhost. */
  readonly serverCertFile: string
  readonly serverKeyFile: string
  /** A client certificate (CN `clientName`) and its key: an upstream's `tls.cert` and `tls.key`. */
  readonly clientCertFile: string
  readonly clientKeyFile: string
  readonly clientName: string
  readonly pem: { readonly ca: string; readonly serverCert: string; readonly serverKey: string; readonly clientCert: string; readonly clientKey: string }
}

/** Makes a CA, a server and a client certificate, and writes them into `dir`. */
export async function makeTestPki(dir: string, clientName = 'customs-upstream-client'): Promise<TestPki> {
  const ca = await createCa({ days: 2 })
  const loaded = loadCa(ca)
  const [server, client] = await Promise.all([
    issueServerCert(loaded, { dns: ['localhost'], ips: ['127.0.0.1'] }, { days: 2 }),
    issueClientCert(loaded, clientName, { days: 2 }),
  ])
  const files = {
    caFile: join(dir, 'ca.pem'),
    serverCertFile: join(dir, 'server.pem'),
    serverKeyFile: join(dir, 'server.key'),
    clientCertFile: join(dir, 'client.pem'),
    clientKeyFile: join(dir, 'client.key'),
  }
  await Promise.all([
    writeFile(files.caFile, ca.certPem),
    writeFile(files.serverCertFile, server.chainPem),
    writeFile(files.serverKeyFile, server.keyPem, { mode: 0o600 }),
    writeFile(files.clientCertFile, client.certPem),
    writeFile(files.clientKeyFile, client.keyPem, { mode: 0o600 }),
  ])
  return {
    dir,
    ...files,
    clientName,
    pem: { ca: ca.certPem, serverCert: server.chainPem, serverKey: server.keyPem, clientCert: client.certPem, clientKey: client.keyPem },
  }
}
