// Recent decisions from the audit log, newest first, searched by repository or digest (and
// upstream and verdict), a page at a time.

import type { FC } from 'hono/jsx'
import type { Decision } from '../api.js'
import { Badge, Flash, recordHref, shortDigest, when } from './layout.js'

export const VERDICTS = ['cleared', 'cleared-with-warnings', 'detained'] as const

export interface DecisionFilters {
  readonly upstream?: string
  readonly repository?: string
  readonly digest?: string
  readonly verdict?: string
}

export interface DecisionsProps {
  readonly decisions: readonly Decision[]
  readonly filters: DecisionFilters
  readonly upstreams: readonly string[]
  /** The link to the next (older) page, when there is one. */
  readonly older?: string
  readonly error?: string
}

export const DecisionsPage: FC<DecisionsProps> = ({ decisions, filters, upstreams, older, error }) => (
  <>
    <h1>Decisions</h1>
    {error !== undefined && <Flash kind="error">{error}</Flash>}
    <form class="filters card" method="get" action="/console/decisions">
      <label>
        Upstream
        <select name="upstream">
          <option value="">any</option>
          {upstreams.map((u) => (
            <option value={u} selected={filters.upstream === u}>
              {u}
            </option>
          ))}
        </select>
      </label>
      <label>
        Repository
        <input name="repository" value={filters.repository ?? ''} maxlength={255} placeholder="library/alpine" />
      </label>
      <label>
        Digest
        <input name="digest" value={filters.digest ?? ''} maxlength={200} placeholder="sha256:…" />
      </label>
      <label>
        Verdict
        <select name="verdict">
          <option value="">any</option>
          {VERDICTS.map((v) => (
            <option value={v} selected={filters.verdict === v}>
              {v}
            </option>
          ))}
        </select>
      </label>
      <button type="submit">Search</button>
    </form>
    {decisions.length === 0 ? (
      <p class="card muted">No decision matches.</p>
    ) : (
      <table data-testid="decisions">
        <thead>
          <tr>
            <th>When</th>
            <th>Verdict</th>
            <th>Image</th>
            <th>Reference</th>
            <th>Why</th>
            <th>Client</th>
          </tr>
        </thead>
        <tbody>
          {decisions.map((d) => (
            <tr>
              <td>{when(d.time)}</td>
              <td>
                <Badge value={d.verdict ?? ''} tone={d.verdict === 'cleared-with-warnings' ? 'warn' : d.verdict} />
              </td>
              <td>
                {d.upstream}/{d.repository}
                {d.digest !== undefined && (
                  <div class="mono muted nowrap">
                    {d.verdict === 'detained' && d.upstream !== undefined && d.repository !== undefined ? (
                      <a href={recordHref(d.upstream, d.repository, d.digest)} title={d.digest}>
                        {shortDigest(d.digest)}
                      </a>
                    ) : (
                      <span title={d.digest}>{shortDigest(d.digest)}</span>
                    )}
                  </div>
                )}
              </td>
              <td class="mono">{d.reference ?? ''}</td>
              <td>{(d.reasons ?? []).join('; ')}</td>
              <td>
                {d.client?.identity ?? d.client?.address ?? ''}
                {d.client?.userAgent !== undefined && <div class="muted">{d.client.userAgent}</div>}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    )}
    {older !== undefined && (
      <p>
        <a href={older}>Older decisions</a>
      </p>
    )}
  </>
)
