// Cache and upstream health at a glance: hit ratio, bytes served and fetched, size against the
// limit, and per upstream the circuit state, the pull quota left and the last error.

import type { FC } from 'hono/jsx'
import { formatBytes } from '../../config/units.js'
import type { CacheStatus, UpstreamStatus } from '../api.js'
import { Badge, Flash, when } from './layout.js'

/** Bytes as a person reads them (binary units), or nothing when unknown. */
export function bytes(n: number | undefined): string {
  return n === undefined || !Number.isFinite(n) ? '' : formatBytes(n, ' ')
}

export interface HealthProps {
  readonly cache?: CacheStatus
  readonly cacheError?: string
  readonly upstreams?: readonly UpstreamStatus[]
  readonly upstreamsError?: string
}

export const HealthPage: FC<HealthProps> = ({ cache, cacheError, upstreams, upstreamsError }) => (
  <>
    <h1>Health</h1>
    <h2>Cache</h2>
    {cacheError !== undefined && <Flash kind="error">{cacheError}</Flash>}
    {cache !== undefined && (
      <div class="counts" data-testid="cache">
        <div class="count">
          <b>{cache.hitRatio === null || cache.hitRatio === undefined ? 'n/a' : `${(cache.hitRatio * 100).toFixed(1)}%`}</b> hit ratio
        </div>
        <div class="count">
          <b>{bytes(cache.bytesServed)}</b> served
        </div>
        <div class="count">
          <b>{bytes(cache.bytesFetched)}</b> fetched from upstreams
        </div>
        <div class="count">
          <b>
            {bytes(cache.bytes)} / {bytes(cache.maxSize)}
          </b>{' '}
          in {cache.blobs ?? 0} blob(s)
        </div>
        <div class="count">
          <b>
            {cache.hits ?? 0} / {cache.misses ?? 0} / {cache.joins ?? 0}
          </b>{' '}
          hits / misses / joins
        </div>
      </div>
    )}
    <h2>Upstreams</h2>
    {upstreamsError !== undefined && <Flash kind="error">{upstreamsError}</Flash>}
    {upstreams !== undefined && (
      <table data-testid="upstreams">
        <thead>
          <tr>
            <th>Upstream</th>
            <th>Circuit</th>
            <th>Pull quota left</th>
            <th>Requests</th>
            <th>Errors</th>
            <th>Last success</th>
            <th>Last error</th>
          </tr>
        </thead>
        <tbody>
          {upstreams.map((u) => (
            <tr>
              <td>
                {u.name}
                {u.default === true ? ' (default)' : ''}
                <div class="mono muted">{u.url}</div>
              </td>
              <td>
                <Badge value={u.circuit?.state ?? 'unknown'} />
                {u.circuit?.since !== undefined && <div class="muted">since {when(u.circuit.since)}</div>}
              </td>
              <td>
                {u.rateLimit === undefined
                  ? 'not reported'
                  : `${u.rateLimit.remaining}${u.rateLimit.limit !== undefined ? ` of ${u.rateLimit.limit}` : ''}`}
              </td>
              <td>{u.requests ?? 0}</td>
              <td>{u.errors ?? 0}</td>
              <td>{when(u.lastSuccess)}</td>
              <td>
                {u.lastError !== undefined && (
                  <>
                    {when(u.lastError.at)} {u.lastError.kind}: {u.lastError.message}
                  </>
                )}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    )}
    <p class="muted">Figures are this replica's since it started.</p>
  </>
)
