// Routing request names to configured upstreams: the default Docker Hub shape, host and alias
// prefixes, containerd's `ns` (with and without override_path), and refusals of unknown hosts.

import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { parseConfig } from '../../../src/config/load.js'
import type { UpstreamConfig } from '../../../src/config/schema.js'
import { CustomsError, type ErrorCode } from '../../../src/errors.js'
import { isDockerHub, UpstreamRouter } from '../../../src/upstream/routing.js'

function upstreamsOf(yaml: string): UpstreamConfig[] {
  // No credentials in these configurations, so nothing is left to resolve.
  return parseConfig(yaml).upstreams.map((u) => ({ ...u, credentials: undefined }))
}

const defaults = new UpstreamRouter(upstreamsOf(''))

const withPort = new UpstreamRouter(
  upstreamsOf(`
upstreams:
  - name: docker.io
    url: https://registry-1.docker.io
    aliases: [index.docker.io]
    default: true
  - name: registry.internal:5000
    url: http://registry.internal:5000
    aliases: [internal]
  - name: localhost:5001
    url: http://127.0.0.1:5001
`)
)

const noDefault = new UpstreamRouter(
  upstreamsOf(`
upstreams:
  - name: ghcr.io
    url: https://ghcr.io
`)
)

function isCode(code: ErrorCode): (err: unknown) => boolean {
  return (err: unknown) => {
    assert.ok(err instanceof CustomsError, `expected a CustomsError, got ${String(err)}`)
    assert.equal(err.code, code)
    return true
  }
}

describe('UpstreamRouter with the default upstreams', () => {
  describe('when the name has one component', () => {
    it('returns docker.io library/<name>', () => {
      assert.deepEqual(defaults.route('alpine', undefined), {
        upstream: 'docker.io',
        repository: 'library/alpine',
      })
    })
  })

  describe('when the name is a Docker Hub name', () => {
    it('returns docker.io and the name as it is', () => {
      assert.deepEqual(defaults.route('library/alpine', undefined), {
        upstream: 'docker.io',
        repository: 'library/alpine',
      })
    })

    it('returns a non-dotted first component that is no alias as a Docker Hub namespace', () => {
      assert.deepEqual(defaults.route('myorg/app', undefined), {
        upstream: 'docker.io',
        repository: 'myorg/app',
      })
      assert.deepEqual(defaults.route('bitnami/redis', undefined), {
        upstream: 'docker.io',
        repository: 'bitnami/redis',
      })
    })

    it('returns a deep name whole', () => {
      assert.deepEqual(defaults.route('a/b/c/d', undefined), {
        upstream: 'docker.io',
        repository: 'a/b/c/d',
      })
    })

    // BuildKit's `# syntax=docker/dockerfile:1` and docker/compose live in Docker Hub's `docker`
    // namespace; Docker sends `/v2/docker/dockerfile/...` to its mirror.
    it('returns docker.io docker/dockerfile for the Docker Hub namespace named docker', () => {
      assert.deepEqual(defaults.route('docker/dockerfile', undefined), {
        upstream: 'docker.io',
        repository: 'docker/dockerfile',
      })
    })
  })

  describe('when the first component names a configured upstream', () => {
    it('returns ghcr.io and the rest for ghcr.io/org/app', () => {
      assert.deepEqual(defaults.route('ghcr.io/org/app', undefined), {
        upstream: 'ghcr.io',
        repository: 'org/app',
      })
    })

    it('returns ghcr.io and the rest for the alias ghcr/org/app', () => {
      assert.deepEqual(defaults.route('ghcr/org/app', undefined), {
        upstream: 'ghcr.io',
        repository: 'org/app',
      })
    })

    it('returns every other default upstream by name and by alias', () => {
      assert.deepEqual(defaults.route('quay.io/prometheus/node-exporter', undefined), {
        upstream: 'quay.io',
        repository: 'prometheus/node-exporter',
      })
      assert.deepEqual(defaults.route('quay/a/b', undefined), {
        upstream: 'quay.io',
        repository: 'a/b',
      })
      assert.deepEqual(defaults.route('registry.k8s.io/pause', undefined), {
        upstream: 'registry.k8s.io',
        repository: 'pause',
      })
      assert.deepEqual(defaults.route('k8s/pause', undefined), {
        upstream: 'registry.k8s.io',
        repository: 'pause',
      })
      assert.deepEqual(defaults.route('gcr.io/distroless/static', undefined), {
        upstream: 'gcr.io',
        repository: 'distroless/static',
      })
    })

    it('adds no library/ to a one-component name off Docker Hub', () => {
      assert.deepEqual(defaults.route('ghcr.io/app', undefined), {
        upstream: 'ghcr.io',
        repository: 'app',
      })
    })

    it('returns docker.io library/<name> for each Docker Hub host name', () => {
      for (const host of ['docker.io', 'index.docker.io', 'registry-1.docker.io']) {
        assert.deepEqual(defaults.route(`${host}/alpine`, undefined), {
          upstream: 'docker.io',
          repository: 'library/alpine',
        })
        assert.deepEqual(defaults.route(`${host}/myorg/app`, undefined), {
          upstream: 'docker.io',
          repository: 'myorg/app',
        })
      }
    })
  })

  describe('when the first component looks like a host that is not configured', () => {
    for (const name of [
      'evil.com/x',
      'evil.com/library/alpine',
      'localhost/x',
      '169.254.169.254/latest',
      'evil.com:443/x',
    ]) {
      it(`throws NAME_UNKNOWN for ${name}`, () => {
        assert.throws(() => defaults.route(name, undefined), isCode('NAME_UNKNOWN'))
      })
    }
  })

  describe('when ns is given', () => {
    it('returns docker.io library/alpine for ns=docker.io and echoes ns', () => {
      assert.deepEqual(defaults.route('alpine', 'docker.io'), {
        upstream: 'docker.io',
        repository: 'library/alpine',
        namespace: 'docker.io',
      })
      assert.deepEqual(defaults.route('library/alpine', 'docker.io'), {
        upstream: 'docker.io',
        repository: 'library/alpine',
        namespace: 'docker.io',
      })
    })

    it('returns docker.io for ns=index.docker.io and echoes the ns as sent', () => {
      assert.deepEqual(defaults.route('library/alpine', 'index.docker.io'), {
        upstream: 'docker.io',
        repository: 'library/alpine',
        namespace: 'index.docker.io',
      })
    })

    it('returns ghcr.io org/app for ns=ghcr.io without a path prefix', () => {
      assert.deepEqual(defaults.route('org/app', 'ghcr.io'), {
        upstream: 'ghcr.io',
        repository: 'org/app',
        namespace: 'ghcr.io',
      })
    })

    it('returns ghcr.io org/app for ns=ghcr.io with the ghcr.io/ prefix of override_path', () => {
      assert.deepEqual(defaults.route('ghcr.io/org/app', 'ghcr.io'), {
        upstream: 'ghcr.io',
        repository: 'org/app',
        namespace: 'ghcr.io',
      })
    })

    it('keeps a prefix that names another upstream as part of the repository', () => {
      assert.deepEqual(defaults.route('quay.io/org/app', 'ghcr.io'), {
        upstream: 'ghcr.io',
        repository: 'quay.io/org/app',
        namespace: 'ghcr.io',
      })
    })

    it('returns the upstream for ns in any case', () => {
      assert.equal(defaults.route('org/app', 'GHCR.IO').upstream, 'ghcr.io')
    })

    it('treats an empty ns as absent', () => {
      assert.deepEqual(defaults.route('ghcr.io/org/app', ''), {
        upstream: 'ghcr.io',
        repository: 'org/app',
      })
    })

    it('returns docker.io docker/dockerfile for docker/dockerfile?ns=docker.io', () => {
      assert.deepEqual(defaults.route('docker/dockerfile', 'docker.io'), {
        upstream: 'docker.io',
        repository: 'docker/dockerfile',
        namespace: 'docker.io',
      })
    })

    for (const ns of ['evil.com', 'localhost', '127.0.0.1:5000', 'registry.example.com']) {
      it(`throws NAME_UNKNOWN for the unknown ns ${ns}`, () => {
        assert.throws(() => defaults.route('org/app', ns), isCode('NAME_UNKNOWN'))
      })
    }

    it('throws NAME_INVALID for an invalid name even when ns is known', () => {
      assert.throws(() => defaults.route('Org/App', 'ghcr.io'), isCode('NAME_INVALID'))
    })
  })

  describe('when the name is invalid', () => {
    const bad = [
      '',
      'Alpine',
      'library/Alpine',
      'a//b',
      '/alpine',
      'alpine/',
      '../etc/passwd',
      'a/../b',
      'a%2fb',
      '-x/y',
      'ghcr.io/',
      'ghcr.io/Org/app',
      'x'.repeat(256),
      'myhost:5000',
      'myhost:123456/x',
    ]
    for (const name of bad) {
      it(`throws NAME_INVALID for ${JSON.stringify(name.slice(0, 30))}`, () => {
        assert.throws(() => defaults.route(name, undefined), isCode('NAME_INVALID'))
      })
    }
  })

  describe('lookup', () => {
    it('returns the upstream by name or alias, in any case, and undefined otherwise', () => {
      assert.equal(defaults.lookup('ghcr')?.name, 'ghcr.io')
      assert.equal(defaults.lookup('Registry-1.Docker.IO')?.name, 'docker.io')
      assert.equal(defaults.lookup('evil.com'), undefined)
    })
  })

  describe('isDockerHub', () => {
    it('returns true for docker.io only among the defaults', () => {
      const hub = upstreamsOf('')
        .filter(isDockerHub)
        .map((u) => u.name)
      assert.deepEqual(hub, ['docker.io'])
    })
  })
})

describe('UpstreamRouter with a host:port upstream', () => {
  describe('when the first component is the configured host:port', () => {
    it('returns that upstream and the rest of the name', () => {
      assert.deepEqual(withPort.route('registry.internal:5000/team/app', undefined), {
        upstream: 'registry.internal:5000',
        repository: 'team/app',
      })
      assert.deepEqual(withPort.route('localhost:5001/app', undefined), {
        upstream: 'localhost:5001',
        repository: 'app',
      })
      assert.deepEqual(withPort.route('internal/team/app', undefined), {
        upstream: 'registry.internal:5000',
        repository: 'team/app',
      })
    })

    it('returns that upstream for ns=host:port, with or without the prefix', () => {
      assert.deepEqual(withPort.route('team/app', 'registry.internal:5000'), {
        upstream: 'registry.internal:5000',
        repository: 'team/app',
        namespace: 'registry.internal:5000',
      })
      assert.deepEqual(
        withPort.route('registry.internal:5000/team/app', 'registry.internal:5000'),
        {
          upstream: 'registry.internal:5000',
          repository: 'team/app',
          namespace: 'registry.internal:5000',
        }
      )
    })
  })

  describe('when the first component is another port of a configured host', () => {
    it('throws NAME_UNKNOWN', () => {
      assert.throws(
        () => withPort.route('registry.internal:5001/team/app', undefined),
        isCode('NAME_UNKNOWN')
      )
      assert.throws(() => withPort.route('localhost:5000/app', undefined), isCode('NAME_UNKNOWN'))
    })
  })

  describe('when ghcr.io is not configured', () => {
    it('throws NAME_UNKNOWN for ghcr.io/..., and takes ghcr/... as a Hub namespace', () => {
      assert.throws(() => withPort.route('ghcr.io/org/app', undefined), isCode('NAME_UNKNOWN'))
      assert.deepEqual(withPort.route('ghcr/app', undefined), {
        upstream: 'docker.io',
        repository: 'ghcr/app',
      })
    })
  })
})

describe('UpstreamRouter without a default upstream', () => {
  describe('when the name carries no upstream', () => {
    it('throws NAME_UNKNOWN', () => {
      assert.throws(() => noDefault.route('alpine', undefined), isCode('NAME_UNKNOWN'))
      assert.throws(() => noDefault.route('myorg/app', undefined), isCode('NAME_UNKNOWN'))
    })
  })

  describe('when the name names the configured upstream', () => {
    it('returns it', () => {
      assert.deepEqual(noDefault.route('ghcr.io/org/app', undefined), {
        upstream: 'ghcr.io',
        repository: 'org/app',
      })
    })
  })
})
