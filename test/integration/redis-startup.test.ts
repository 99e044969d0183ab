// Customs started while Redis is away comes up not ready instead of exiting, serves /healthz,
// refuses pulls with 503, and becomes ready by itself when Redis answers.

import assert from 'node:assert/strict'
import { after, describe, it } from 'node:test'
import { startRedisServer, type RedisServer } from '../helpers/redis-server.js'
import { startCustomsProcess, type CustomsProcess } from '../helpers/customs-process.js'
import { waitFor } from '../helpers/ports.js'

let redis: RedisServer | undefined
let customs: CustomsProcess | undefined

after(async () => {
  await customs?.stop()
  await redis?.stop()
})

describe('when Redis is down at start', () => {
  it('starts not ready, then becomes ready when Redis comes back', async () => {
    redis = await startRedisServer()
    await redis.kill()
    customs = await startCustomsProcess(`state: { backend: redis, redis: { url: "${redis.url}", prefix: startup } }\n`)
    assert.equal((await fetch(`${customs.url}/healthz`)).status, 200)
    assert.equal((await fetch(`${customs.url}/readyz`)).status, 503)
    const pull = await fetch(`${customs.url}/v2/library/alpine/manifests/3.19`)
    assert.equal(pull.status, 503)
    assert.equal(((await pull.json()) as { errors: Array<{ code: string }> }).errors[0]?.code, 'UNAVAILABLE')
    await redis.restart()
    await waitFor('readyz 200', async () => (await fetch(`${(customs as CustomsProcess).url}/readyz`)).status === 200, 20_000)
  })
})
