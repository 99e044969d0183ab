// A real upstream for tests: CNCF distribution (`docker-registry` 2.8) on a free loopback port,
// optionally behind an in-process token server speaking the Docker token protocol (PROTOCOL §3.1).

import { generateKeyPairSync, randomBytes, randomUUID, sign, type KeyObject } from 'node:crypto'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import forge from 'node-forge'
import { stringify } from 'yaml'
import { freePort, waitForHttp } from './ports.js'
import {
  isolatedEnv,
  makeTempDir,
  removeTempDir,
  spawnService,
  whileRunning,
  withLogTail,
  type ServiceProcess,
} from './processes.js'

/** A registry user. */
export interface Credentials {
  username: string
  password: string
}

/** One entry of a token's `access` claim. */
export interface AccessEntry {
  type: string
  name: string
  actions: string[]
}

/** What the token server saw and answered, one entry per request, in arrival order. */
export interface TokenRequest {
  method: string
  /**
   * Every requested scope as sent, split: `repository:library/x:pull`. distribution builds the
   * challenge's action list from a Go map, so `pull,push` and `push,pull` both occur: assert on
   * {@link TokenRequest.requested} instead when actions matter.
   */
  scopes: string[]
  /** The scopes parsed, with each action list sorted and de-duplicated. */
  requested: AccessEntry[]
  service: string | undefined
  /** Whether the request carried credentials (Basic header or a password grant), right or wrong. */
  withCredentials: boolean
  username: string | undefined
  /** `password` for the POST form, undefined for GET. */
  grantType: string | undefined
  /** 200, or 400/401 when refused. */
  status: number
  /** The access the issued token grants, actions sorted (empty when refused). */
  granted: AccessEntry[]
  userAgent: string | undefined
  /** Date.now() at arrival. */
  at: number
}

/** Options for {@link startTokenServer}. */
export interface TokenServerOptions {
  /** The `service` the registry expects in `aud`. */
  service: string
  /** The `iss` claim the registry trusts. */
  issuer: string
  /** The one user that may push. */
  credentials: Credentials
  /** Whether anonymous requests get pull access. Default true (Docker Hub-like public repos). */
  anonymousPull?: boolean
  /** `expires_in` of issued tokens, in seconds. Default 300. */
  expiresIn?: number
}

/** An in-process token server; see {@link startTokenServer}. */
export interface TokenServer {
  /** `http://127.0.0.1:PORT/token` */
  realm: string
  /** PEM of the self-signed certificate whose key signs tokens (the registry's rootcertbundle). */
  certificatePem: string
  /** Live list of every token request so far; tests may clear it with `length = 0`. */
  tokenRequests: TokenRequest[]
  close(): Promise<void>
}

/** Options for {@link startRegistry}. */
export interface StartRegistryOptions {
  /** 'none' (default): anonymous pull and push. 'token': Bearer token auth via a token server. */
  auth?: 'none' | 'token'
  /** The push user for auth 'token'. Default: `customs-test` with a random password. */
  credentials?: Credentials
  /** With auth 'token': whether anonymous clients may pull. Default true. */
  anonymousPull?: boolean
  /** With auth 'token': `expires_in` of tokens in seconds. Default 300. */
  tokenExpiresIn?: number
  /** Startup timeout. Default 60 s (a loaded 2-core CI machine can be slow). */
  timeoutMs?: number
  /** Serve HTTPS (`http.tls`) instead of plain HTTP; see {@link RegistryTls}. */
  tls?: RegistryTls
}

/** HTTPS for a test registry, and how test clients (pushes, the readiness probe) connect to it. */
export interface RegistryTls {
  /** The server certificate (PEM, with its chain) and key files: `http.tls.certificate` and `key`. */
  readonly certFile: string
  readonly keyFile: string
  /** CA files whose client certificates the registry requires (`http.tls.clientcas`): mTLS. */
  readonly clientCaFiles?: readonly string[]
  /** What test clients connect with: the CA of the server certificate, and for mTLS a client certificate. */
  readonly client: RegistryClientTls
}

/** TLS options of a test client, PEM text. */
export interface RegistryClientTls {
  readonly ca: string
  readonly cert?: string
  readonly key?: string
}

/** A running `docker-registry`; see {@link startRegistry}. */
export interface RegistryHandle {
  /** `http://127.0.0.1:PORT`, or `https://` with `tls`. */
  readonly url: string
  /** How test clients connect over TLS (the `tls.client` started with), for pushes. */
  readonly tls?: RegistryClientTls
  /** `127.0.0.1:PORT`, for image references. */
  readonly host: string
  readonly auth: 'none' | 'token'
  /** The push user (auth 'token' only). */
  readonly credentials?: Credentials
  /** Token server realm URL (auth 'token' only). */
  readonly realm?: string
  /** `service` of the Bearer challenge (auth 'token' only). */
  readonly service?: string
  /** Live list of token requests (always empty for auth 'none'). */
  readonly tokenRequests: TokenRequest[]
  /** The registry's temp dir (config.yml, registry.log, data/). */
  readonly dir: string
  /** The registry process (log file, tail()). */
  readonly process: ServiceProcess
  /** Stops the registry and the token server, and removes the temp dir. Idempotent. */
  stop(): Promise<void>
  /**
   * SIGKILLs the registry process only (an abrupt upstream outage); storage and the token server
   * stay, so {@link RegistryHandle.restart} can bring the same registry back on the same port.
   */
  kill(): Promise<void>
  /** Starts the registry process again after kill(), same port, config and storage. */
  restart(): Promise<void>
}

const TOKEN_SERVICE = 'customs-test-registry'
const TOKEN_ISSUER = 'customs-test-token-issuer'

/**
 * Starts `docker-registry serve config.yml` on a free 127.0.0.1 port with filesystem storage in a
 * temp dir and deletes enabled. With `auth: 'token'` it also starts a token server and configures
 * `auth.token` (realm, service, issuer, rootcertbundle). Waits until `/v2/` answers.
 */
export async function startRegistry(options: StartRegistryOptions = {}): Promise<RegistryHandle> {
  const auth = options.auth ?? 'none'
  const timeoutMs = options.timeoutMs ?? 60_000
  const dir = await makeTempDir('registry')
  let tokenServer: TokenServer | undefined
  try {
    const defaultUser = { username: 'customs-test', password: randomBytes(12).toString('hex') }
    const credentials = auth === 'token' ? (options.credentials ?? defaultUser) : undefined
    if (credentials !== undefined) {
      tokenServer = await startTokenServer({
        service: TOKEN_SERVICE,
        issuer: TOKEN_ISSUER,
        credentials,
        anonymousPull: options.anonymousPull,
        expiresIn: options.tokenExpiresIn,
      })
      await writeFile(join(dir, 'token-root.pem'), tokenServer.certificatePem)
    }
    // Another process may grab the port between freePort() and the registry's bind: retry.
    for (let attempt = 1; ; attempt++) {
      const port = await freePort()
      const configFile = join(dir, 'config.yml')
      await writeFile(configFile, registryConfig(dir, port, tokenServer, options.tls))
      const launch = (): ServiceProcess =>
        spawnService({
          name: 'registry',
          command: 'docker-registry',
          args: ['serve', configFile],
          dir,
          env: isolatedEnv(),
        })
      let proc = launch()
      const url = `${options.tls === undefined ? 'http' : 'https'}://127.0.0.1:${port}`
      const probe = options.tls === undefined ? {} : { tls: options.tls.client }
      try {
        await whileRunning(proc, waitForHttp(`${url}/v2/`, timeoutMs, probe))
      } catch (error) {
        await proc.kill()
        if (attempt < 3 && /address already in use/.test(proc.tail())) continue
        throw withLogTail('docker-registry did not start', error, proc)
      }
      const server = tokenServer
      let stopped = false
      const handle: RegistryHandle = {
        url,
        ...(options.tls !== undefined ? { tls: options.tls.client } : {}),
        host: `127.0.0.1:${port}`,
        auth,
        credentials,
        realm: server?.realm,
        service: server === undefined ? undefined : TOKEN_SERVICE,
        tokenRequests: server?.tokenRequests ?? [],
        dir,
        get process() {
          return proc
        },
        async stop() {
          if (stopped) return
          stopped = true
          await proc.stop(10_000)
          await server?.close()
          await removeTempDir(dir)
        },
        async kill() {
          await proc.kill()
        },
        async restart() {
          if (proc.isRunning()) throw new Error('registry is still running; kill() it first')
          proc = launch()
          try {
            await whileRunning(proc, waitForHttp(`${url}/v2/`, timeoutMs, probe))
          } catch (error) {
            await proc.kill()
            throw withLogTail('docker-registry did not restart', error, proc)
          }
        },
      }
      return handle
    }
  } catch (error) {
    await tokenServer?.close()
    await removeTempDir(dir)
    throw error
  }
}

function registryConfig(dir: string, port: number, tokenServer: TokenServer | undefined, tls: RegistryTls | undefined): string {
  const config: Record<string, unknown> = {
    version: 0.1,
    log: { level: 'warn', formatter: 'text', accesslog: { disabled: false } },
    storage: {
      filesystem: { rootdirectory: join(dir, 'data') },
      delete: { enabled: true },
      maintenance: { uploadpurging: { enabled: false } },
    },
    http: {
      addr: `127.0.0.1:${port}`,
      // A fixed secret silences the "no secret" warning; uploads never span instances here.
      secret: randomBytes(16).toString('hex'),
      headers: { 'X-Content-Type-Options': ['nosniff'] },
      ...(tls !== undefined
        ? {
            tls: {
              certificate: tls.certFile,
              key: tls.keyFile,
              ...(tls.clientCaFiles !== undefined ? { clientcas: tls.clientCaFiles } : {}),
            },
          }
        : {}),
    },
    health: { storagedriver: { enabled: false } },
  }
  if (tokenServer !== undefined) {
    config.auth = {
      token: {
        realm: tokenServer.realm,
        service: TOKEN_SERVICE,
        issuer: TOKEN_ISSUER,
        rootcertbundle: join(dir, 'token-root.pem'),
      },
    }
  }
  return stringify(config)
}

/**
 * Starts a Docker-token-protocol server on 127.0.0.1 (node:http, in-process). It issues RS256 JWTs
 * whose `x5c` header holds a self-signed certificate, which distribution 2.8 verifies against its
 * `rootcertbundle`. GET `/token` anonymously gets pull access (when allowed); GET with Basic
 * credentials, or POST `grant_type=password`, gets every requested action; wrong credentials get
 * 401.
 */
export async function startTokenServer(options: TokenServerOptions): Promise<TokenServer> {
  const { privateKey, certificatePem, certificateDer } = makeSigningCertificate()
  const tokenRequests: TokenRequest[] = []
  const issuer: Issuer = {
    privateKey,
    x5c: certificateDer.toString('base64'),
    service: options.service,
    issuer: options.issuer,
    credentials: options.credentials,
    anonymousPull: options.anonymousPull ?? true,
    expiresIn: options.expiresIn ?? 300,
  }
  const server = createServer((req, res) => {
    handleTokenRequest(issuer, tokenRequests, req, res).catch((error: unknown) => {
      res.statusCode = 500
      res.end(String(error))
    })
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => resolve())
  })
  server.unref()
  const address = server.address()
  const port = typeof address === 'object' && address !== null ? address.port : 0
  return {
    realm: `http://127.0.0.1:${port}/token`,
    certificatePem,
    tokenRequests,
    close: () => closeServer(server),
  }
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    if (!server.listening) return resolve()
    server.close(() => resolve())
    server.closeAllConnections()
  })
}

interface Issuer {
  privateKey: KeyObject
  /** base64 DER of the signing certificate, for the JWT `x5c` header. */
  x5c: string
  service: string
  issuer: string
  credentials: Credentials
  anonymousPull: boolean
  expiresIn: number
}

function makeSigningCertificate(): {
  privateKey: KeyObject
  certificatePem: string
  certificateDer: Buffer
} {
  // node:crypto makes the key (fast, native); forge only builds and self-signs the certificate.
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 })
  const forgePrivate = forge.pki.privateKeyFromPem(
    privateKey.export({ type: 'pkcs1', format: 'pem' }).toString()
  )
  const cert = forge.pki.createCertificate()
  const publicPem = publicKey.export({ type: 'spki', format: 'pem' }).toString()
  cert.publicKey = forge.pki.publicKeyFromPem(publicPem)
  // A leading 01 keeps the DER serial positive (Go rejects negative serials).
  cert.serialNumber = `01${randomBytes(8).toString('hex')}`
  cert.validity.notBefore = new Date(Date.now() - 60 * 60 * 1000)
  cert.validity.notAfter = new Date(Date.now() + 30 * 24 * 60 * 60 * 1000)
  const name = [{ name: 'commonName', value: 'customs-test-token-signer' }]
  cert.setSubject(name)
  cert.setIssuer(name)
  cert.setExtensions([
    { name: 'basicConstraints', cA: true },
    { name: 'keyUsage', digitalSignature: true, keyCertSign: true },
  ])
  cert.sign(forgePrivate, forge.md.sha256.create())
  const der = Buffer.from(forge.asn1.toDer(forge.pki.certificateToAsn1(cert)).getBytes(), 'binary')
  return { privateKey, certificatePem: forge.pki.certificateToPem(cert), certificateDer: der }
}

async function handleTokenRequest(
  issuer: Issuer,
  log: TokenRequest[],
  req: IncomingMessage,
  res: ServerResponse
): Promise<void> {
  const url = new URL(req.url ?? '/', 'http://127.0.0.1')
  const entry: TokenRequest = {
    method: req.method ?? 'GET',
    scopes: [],
    requested: [],
    service: undefined,
    withCredentials: false,
    username: undefined,
    grantType: undefined,
    status: 0,
    granted: [],
    userAgent: req.headers['user-agent'],
    at: Date.now(),
  }
  log.push(entry)
  const reply = (status: number, body: unknown, headers: Record<string, string> = {}): void => {
    entry.status = status
    res.writeHead(status, { 'content-type': 'application/json', ...headers })
    res.end(JSON.stringify(body))
  }
  const refuse = (status: number, code: string, message: string): void =>
    reply(
      status,
      { errors: [{ code, message }] },
      status === 401 ? { 'www-authenticate': 'Basic realm="customs-test-token-server"' } : {}
    )

  if (url.pathname !== '/token') return refuse(404, 'NOT_FOUND', 'unknown path')
  let params: URLSearchParams
  let presented: Credentials | undefined
  if (req.method === 'GET') {
    params = url.searchParams
    presented = parseBasic(req.headers.authorization)
  } else if (req.method === 'POST') {
    params = new URLSearchParams((await readBody(req)).toString('utf8'))
    entry.grantType = params.get('grant_type') ?? undefined
    if (entry.grantType !== 'password') {
      entry.service = params.get('service') ?? undefined
      entry.scopes = splitScopes(params.getAll('scope'))
      return refuse(400, 'UNSUPPORTED', `unsupported grant_type ${String(entry.grantType)}`)
    }
    const username = params.get('username')
    const password = params.get('password')
    if (username !== null || password !== null) {
      presented = { username: username ?? '', password: password ?? '' }
    }
  } else {
    return refuse(405, 'UNSUPPORTED', 'method not allowed')
  }
  entry.service = params.get('service') ?? undefined
  entry.scopes = splitScopes(params.getAll('scope'))
  entry.requested = entry.scopes.flatMap((scope) => parseScope(scope) ?? [])
  entry.withCredentials = presented !== undefined
  entry.username = presented?.username
  if (entry.grantType === 'password' && presented === undefined) {
    return refuse(400, 'UNAUTHORIZED', 'grant_type=password needs username and password')
  }

  const expected = issuer.credentials
  const authenticated =
    presented !== undefined &&
    presented.username === expected.username &&
    presented.password === expected.password
  if (presented !== undefined && !authenticated) {
    return refuse(401, 'UNAUTHORIZED', 'wrong username or password')
  }
  if (entry.service !== undefined && entry.service !== issuer.service) {
    return refuse(400, 'INVALID_SERVICE', `unknown service ${entry.service}`)
  }
    const granted = entry.requested.flatMap((parsed): AccessEntry[] => {
    const actions = authenticated
      ? parsed.actions
      : parsed.type === 'repository' && issuer.anonymousPull
        ? parsed.actions.filter((a) => a === 'pull')
        : []
    return actions.length === 0 ? [] : [{ ...parsed, actions }]
  })
  entry.granted = granted
  const expiresIn = issuer.expiresIn
  const now = Math.floor(Date.now() / 1000)
  const token = signJwt(issuer, {
    iss: issuer.issuer,
    sub: authenticated ? expected.username : '',
    aud: issuer.service,
    exp: now + expiresIn,
    nbf: now - 10,
    iat: now,
    jti: randomUUID(),
    access: granted,
  })
  reply(200, {
    token,
    access_token: token,
    expires_in: expiresIn,
    issued_at: new Date(now * 1000).toISOString(),
  })
}

function signJwt(issuer: Issuer, claims: Record<string, unknown>): string {
  const header = { typ: 'JWT', alg: 'RS256', x5c: [issuer.x5c] }
  const signingInput = `${base64url(JSON.stringify(header))}.${base64url(JSON.stringify(claims))}`
  const signature = sign('sha256', Buffer.from(signingInput), issuer.privateKey)
  return `${signingInput}.${base64url(signature)}`
}

function base64url(data: string | Buffer): string {
  return Buffer.from(data).toString('base64url')
}

/** Splits `scope` values: repeated parameters, and space-separated entries within one. */
function splitScopes(values: string[]): string[] {
  return values.flatMap((v) => v.split(' ')).filter((s) => s !== '')
}

/** `type[(class)]:name:actions`, actions sorted; the name may contain colons (host:port/repo). */
function parseScope(scope: string): AccessEntry | undefined {
  const first = scope.indexOf(':')
  const last = scope.lastIndexOf(':')
  if (first <= 0 || last <= first) return undefined
  const type = scope.slice(0, first).replace(/\(.*\)$/, '')
  const name = scope.slice(first + 1, last)
  const actions = [...new Set(scope.slice(last + 1).split(',').filter((a) => a !== ''))].sort()
  return { type, name, actions }
}

function parseBasic(header: string | undefined): Credentials | undefined {
  const match = /^Basic\s+(\S+)$/i.exec(header ?? '')
  if (match?.[1] === undefined) return undefined
  const decoded = Buffer.from(match[1], 'base64').toString('utf8')
  const colon = decoded.indexOf(':')
  if (colon < 0) return { username: decoded, password: '' }
  return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) }
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of req) {
    const buffer = chunk as Buffer
    size += buffer.length
    if (size > 1024 * 1024) throw new Error('token request body too large')
    chunks.push(buffer)
  }
  return Buffer.concat(chunks)
}

