// The quarantine pages: the list with its filters and counts, one detained image with everything
// Customs knows of it, and the confirmation pages of a release and a revocation.

import type { FC } from 'hono/jsx'
import type { ManifestFacts, QuarantineRecord } from '../api.js'
import type { Session } from '../session.js'
import type { AttestationFact, SignatureFact } from '../../verify/facts.js'
import { Badge, CsrfField, Flash, ago, recordHref, shortDigest, splitReason, when } from './layout.js'

export interface QuarantineFilters {
  readonly upstream?: string
  readonly repository?: string
  readonly policy?: string
  readonly state?: string
  readonly age?: string
}

export const STATES = ['detained', 'released', 'revoked', 'purged', 'cleared'] as const
export const AGES: Record<string, { label: string; ms: number }> = {
  '1h': { label: 'last hour', ms: 3600_000 },
  '1d': { label: 'last day', ms: 86_400_000 },
  '7d': { label: 'last 7 days', ms: 7 * 86_400_000 },
  '30d': { label: 'last 30 days', ms: 30 * 86_400_000 },
}

export interface ListProps {
  readonly records: readonly QuarantineRecord[]
  readonly filters: QuarantineFilters
  readonly upstreams: readonly string[]
  /** Records read from the API, records matching the filters, and matches per state. */
  readonly counts: { scanned: number; matched: number; byState: Record<string, number> }
  /** The scan stopped at its bound before the API's last page. */
  readonly truncated: boolean
  readonly shown: number
  readonly error?: string
  readonly now: number
}

export const QuarantineList: FC<ListProps> = (p) => (
  <>
    <h1>Quarantine</h1>
    {p.error !== undefined && <Flash kind="error">{p.error}</Flash>}
    <form class="filters card" method="get" action="/console/quarantine">
      <label>
        Upstream
        <select name="upstream">
          <option value="">any</option>
          {p.upstreams.map((u) => (
            <option value={u} selected={p.filters.upstream === u}>
              {u}
            </option>
          ))}
        </select>
      </label>
      <label>
        Repository contains
        <input name="repository" value={p.filters.repository ?? ''} maxlength={255} placeholder="acme/app" />
      </label>
      <label>
        Policy
        <input name="policy" value={p.filters.policy ?? ''} maxlength={253} placeholder="policy name" />
      </label>
      <label>
        State
        <select name="state">
          <option value="">any</option>
          {STATES.map((s) => (
            <option value={s} selected={p.filters.state === s}>
              {s}
            </option>
          ))}
        </select>
      </label>
      <label>
        Refused in the
        <select name="age">
          <option value="">any time</option>
          {Object.entries(AGES).map(([value, { label }]) => (
            <option value={value} selected={p.filters.age === value}>
              {label}
            </option>
          ))}
        </select>
      </label>
      <button type="submit">Filter</button>
    </form>
    <div class="counts" data-testid="counts">
      <div class="count">
        <b>{p.counts.matched}</b> matching
      </div>
      {STATES.map((s) => (
        <div class="count">
          <b>{p.counts.byState[s] ?? 0}</b> {s}
        </div>
      ))}
    </div>
    {p.truncated && (
      <p class="muted">
        Only the {p.counts.scanned} most recently refused records were searched; narrow by upstream to see older ones.
      </p>
    )}
    {p.records.length === 0 ? (
      <p class="card muted">No quarantine record matches.</p>
    ) : (
      <table data-testid="quarantine">
        <thead>
          <tr>
            <th>State</th>
            <th>Image</th>
            <th>References</th>
            <th>Why</th>
            <th>Refused</th>
            <th>Last refused</th>
          </tr>
        </thead>
        <tbody>
          {p.records.map((r) => (
            <tr>
              <td>
                <Badge value={r.state} />
              </td>
              <td>
                <a href={recordHref(r.upstream, r.repository, r.digest)} title={r.digest}>
                  {r.upstream}/{r.repository}
                </a>
                <div class="mono muted nowrap">{shortDigest(r.digest)}</div>
              </td>
              <td class="mono">{r.references.slice(0, 3).join(', ')}</td>
              <td>{r.reasons[0] ?? ''}{r.reasons.length > 1 ? ` (+${r.reasons.length - 1})` : ''}</td>
              <td>{r.refused}</td>
              <td title={when(r.lastSeen)}>{ago(r.lastSeen, p.now)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    )}
    {p.counts.matched > p.shown && (
      <p class="muted">
        Showing the {p.shown} most recent of {p.counts.matched} matches.
      </p>
    )}
  </>
)

export const EXPIRIES: Record<string, { label: string; ms: number }> = {
  '1h': { label: '1 hour', ms: 3600_000 },
  '1d': { label: '1 day', ms: 86_400_000 },
  '7d': { label: '7 days', ms: 7 * 86_400_000 },
  '30d': { label: '30 days', ms: 30 * 86_400_000 },
  '90d': { label: '90 days', ms: 90 * 86_400_000 },
}

export interface DetailProps {
  readonly record: QuarantineRecord
  readonly manifest?: ManifestFacts
  readonly manifestError?: string
  readonly session: Session
  readonly flash?: { kind: 'ok' | 'error'; text: string }
  readonly now: number
}

const mayDecide = (session: Session): boolean => session.role === 'approver' || session.role === 'admin'

export const QuarantineDetail: FC<DetailProps> = ({ record: r, manifest, manifestError, session, flash, now }) => {
  const reasons = r.reasons.map(splitReason)
  const base = `/console/quarantine/${encodeURIComponent(r.upstream)}/${encodeURIComponent(r.digest)}`
  const facts = manifest?.facts
  const image = manifest?.image
  const cleared = r.state === 'cleared' ? r.history?.find((h) => h.action === 'cleared') : undefined
  return (
    <>
      <h1>
        {r.upstream}/{r.repository} <Badge value={r.state} />
      </h1>
      <p class="mono" data-testid="digest">
        {r.digest}
      </p>
      {flash !== undefined && <Flash kind={flash.kind}>{flash.text}</Flash>}
      {r.state === 'cleared' && (
        <p class="card" data-testid="cleared">
          The policies in force clear this image: it is served.
          {cleared !== undefined && ` Cleared by ${cleared.by} on ${when(cleared.at)} at revision ${cleared.revision ?? 'unknown'}.`}
          {' '}What follows is why it was detained before.
        </p>
      )}
      <div class="card">
        <h2>Why it was detained</h2>
        <table data-testid="reasons">
          <thead>
            <tr>
              <th>Policy</th>
              <th>Rule</th>
              <th>Reason</th>
            </tr>
          </thead>
          <tbody>
            {reasons.map((x) => (
              <tr>
                <td>{x.policy ?? ''}</td>
                <td>{x.rule ?? ''}</td>
                <td>{x.why}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      <div class="card">
        <dl class="facts">
          <dt>References asked for</dt>
          <dd class="mono" data-testid="references">
            {r.references.join(', ')}
          </dd>
          <dt>First refused</dt>
          <dd>{when(r.firstSeen)}</dd>
          <dt>Last refused</dt>
          <dd>
            {when(r.lastSeen)} ({ago(r.lastSeen, now)})
          </dd>
          <dt>Pulls refused</dt>
          <dd>{r.refused}</dd>
          {r.release !== undefined && (
            <>
              <dt>Released by</dt>
              <dd data-testid="release">
                {r.release.by}, {when(r.release.at)}, until {when(r.release.expires)}: {r.release.reason}
              </dd>
            </>
          )}
        </dl>
      </div>
      {mayDecide(session) && r.state !== 'cleared' && (
        <div class="card actions" data-testid="actions">
          <form class="stack" method="post" action={`${base}/release`}>
            <CsrfField session={session} />
            <input type="hidden" name="repository" value={r.repository} />
            <label>
              Reason for releasing (required)
              <textarea name="reason" required maxlength={1024}></textarea>
            </label>
            <label>
              Release for
              <select name="expires" required>
                <option value="">choose how long</option>
                {Object.entries(EXPIRIES).map(([value, { label }]) => (
                  <option value={value}>{label}</option>
                ))}
              </select>
            </label>
            <div>
              <button type="submit">Release…</button>
            </div>
          </form>
          {r.state === 'released' && (
            <form method="post" action={`${base}/revoke`}>
              <CsrfField session={session} />
              <input type="hidden" name="repository" value={r.repository} />
              <button type="submit" class="danger">
                Revoke the release…
              </button>
            </form>
          )}
        </div>
      )}
      <h2>Signatures</h2>
      {manifestError !== undefined && <p class="muted">{manifestError}</p>}
      <FactTable facts={facts?.signatures ?? []} attestations={false} testid="signatures" />
      <h2>Attestations</h2>
      <FactTable facts={facts?.attestations ?? []} attestations={true} testid="attestations" />
      {facts !== undefined && (facts.notation > 0 || facts.discoveryErrors.length > 0 || facts.inheritedFrom !== undefined) && (
        <ul class="muted">
          {facts.inheritedFrom !== undefined && <li>Inherited from the index {facts.inheritedFrom}</li>}
          {facts.notation > 0 && <li>{facts.notation} Notary signature(s) seen, not verified</li>}
          {facts.discoveryErrors.map((e) => (
            <li>{e}</li>
          ))}
        </ul>
      )}
      {image !== undefined && (
        <>
          <h2>Image</h2>
          <div class="card">
            <dl class="facts" data-testid="image">
              <dt>Kind</dt>
              <dd>{image.kind}</dd>
              <dt>Media type</dt>
              <dd class="mono">{image.mediaType}</dd>
              {image.created !== undefined && (
                <>
                  <dt>Created</dt>
                  <dd>{image.created}</dd>
                </>
              )}
              {image.user !== undefined && (
                <>
                  <dt>User</dt>
                  <dd class="mono">{image.user === '' ? '(unset: root)' : image.user}</dd>
                </>
              )}
              <dt>Platforms</dt>
              <dd>{image.platforms.join(', ')}</dd>
              {image.size !== undefined && (
                <>
                  <dt>Size</dt>
                  <dd>{image.size} bytes in {image.layers ?? 0} layer(s)</dd>
                </>
              )}
            </dl>
          </div>
          <KeyValues title="Labels" values={image.labels} testid="labels" />
          <KeyValues title="Annotations" values={image.annotations} testid="annotations" />
        </>
      )}
      <h2>Clients refused</h2>
      <table data-testid="clients">
        <thead>
          <tr>
            <th>Address</th>
            <th>User agent</th>
            <th>Identity</th>
          </tr>
        </thead>
        <tbody>
          {r.clients.map((c) => (
            <tr>
              <td class="mono">{c.address ?? ''}</td>
              <td>{c.userAgent ?? ''}</td>
              <td>{c.identity ?? ''}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {r.history !== undefined && r.history.length > 0 && (
        <>
          <h2>History</h2>
          <table data-testid="history">
            <thead>
              <tr>
                <th>When</th>
                <th>Action</th>
                <th>By</th>
                <th>Reason or revision</th>
                <th>Until</th>
              </tr>
            </thead>
            <tbody>
              {r.history.map((h) => (
                <tr>
                  <td>{when(h.at)}</td>
                  <td>{h.action}</td>
                  <td>{h.by}</td>
                  <td>{historyDetail(h)}</td>
                  <td>{h.expires !== undefined ? when(h.expires) : ''}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </>
      )}
    </>
  )
}

/** A history entry's reason (release, purge) or revision, with a refusal's reasons (`detained`). */
function historyDetail(h: NonNullable<QuarantineRecord['history']>[number]): string {
  const revision = h.revision !== undefined ? `at revision ${h.revision}` : ''
  const why = h.reason ?? (h.reasons !== undefined && h.reasons.length > 0 ? h.reasons.join('; ') : '')
  return revision !== '' && why !== '' ? `${revision}: ${why}` : revision || why
}

const FactTable: FC<{ facts: readonly (SignatureFact | AttestationFact)[]; attestations: boolean; testid: string }> = ({
  facts,
  attestations,
  testid,
}) =>
  facts.length === 0 ? (
    <p class="muted">None found.</p>
  ) : (
    <table data-testid={testid}>
      <thead>
        <tr>
          <th>Verified</th>
          {attestations && <th>Predicate</th>}
          <th>Signed by</th>
          <th>Issuer</th>
          <th>Source</th>
          <th>Signed at</th>
          <th>Why not</th>
        </tr>
      </thead>
      <tbody>
        {facts.map((f) => {
          const a = f as AttestationFact
          const signer =
            f.identity?.subject ?? (f.key !== undefined ? `key ${f.key}` : f.kind === 'keyless' ? 'keyless' : '')
          return (
            <tr>
              <td>
                <Badge value={f.verified ? 'ok' : 'bad'} />
              </td>
              {attestations && (
                <td class="mono">
                  {a.predicateType ?? ''}
                  {a.predicate?.slsa?.builderId !== undefined && <div>builder {a.predicate.slsa.builderId}</div>}
                  {a.predicate?.sbom !== undefined && <div>SBOM ({a.predicate.sbom.format})</div>}
                  {a.predicate?.vulnerabilities?.scanner !== undefined && (
                    <div>scan by {a.predicate.vulnerabilities.scanner}</div>
                  )}
                </td>
              )}
              <td class="mono">{signer}</td>
              <td class="mono">{f.identity?.issuer ?? f.root ?? ''}</td>
              <td>
                {f.source} <span class="mono muted" title={f.artifact}>{shortDigest(f.artifact)}</span>
              </td>
              <td>{f.signedAt ?? ''}</td>
              <td>{f.reason ?? ''}</td>
            </tr>
          )
        })}
      </tbody>
    </table>
  )

const KeyValues: FC<{ title: string; values: Readonly<Record<string, string>>; testid: string }> = ({
  title,
  values,
  testid,
}) => {
  const entries = Object.entries(values)
  if (entries.length === 0) return <></>
  return (
    <>
      <h2>{title}</h2>
      <table data-testid={testid}>
        <tbody>
          {entries.map(([k, v]) => (
            <tr>
              <td class="mono">{k}</td>
              <td class="mono">{v}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </>
  )
}

export interface ConfirmProps {
  readonly record: QuarantineRecord
  readonly session: Session
  readonly action: 'release' | 'revoke'
  readonly reason?: string
  readonly expires?: string
  /** When the release would end if confirmed now. */
  readonly until?: number
}

/** What is about to happen, with the one button that does it: the no-JavaScript confirmation. */
export const ConfirmAction: FC<ConfirmProps> = ({ record: r, session, action, reason, expires, until }) => {
  const base = `/console/quarantine/${encodeURIComponent(r.upstream)}/${encodeURIComponent(r.digest)}`
  return (
    <>
      <h1>{action === 'release' ? 'Release this image?' : 'Revoke this release?'}</h1>
      <div class="card">
        <dl class="facts">
          <dt>Image</dt>
          <dd>
            {r.upstream}/{r.repository}
          </dd>
          <dt>Digest</dt>
          <dd class="mono">{r.digest}</dd>
          {action === 'release' ? (
            <>
              <dt>Reason</dt>
              <dd data-testid="confirm-reason">{reason ?? ''}</dd>
              <dt>Until</dt>
              <dd>{when(until)}</dd>
              <dt>Recorded as</dt>
              <dd>{session.name}</dd>
            </>
          ) : (
            <>
              <dt>Effect</dt>
              <dd>Pulls of this digest are refused again at once.</dd>
              <dt>Recorded as</dt>
              <dd>{session.name}</dd>
            </>
          )}
        </dl>
      </div>
      <div class="actions">
        <form method="post" action={`${base}/${action}`}>
          <CsrfField session={session} />
          <input type="hidden" name="repository" value={r.repository} />
          {reason !== undefined && <input type="hidden" name="reason" value={reason} />}
          {expires !== undefined && <input type="hidden" name="expires" value={expires} />}
          <input type="hidden" name="confirm" value="yes" />
          <button type="submit" class={action === 'revoke' ? 'danger' : ''}>
            {action === 'release' ? 'Yes, release it' : 'Yes, revoke it'}
          </button>
        </form>
        <a href={recordHref(r.upstream, r.repository, r.digest)}>Cancel</a>
      </div>
    </>
  )
}
