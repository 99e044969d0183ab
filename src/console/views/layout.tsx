// The page frame and the small pieces every page uses. Everything is rendered with hono's JSX,
// which escapes every text and attribute value: nothing here builds HTML from strings, so a
// repository, tag, label or reason from an upstream or a person shows as the text it is.

import type { Child, FC, PropsWithChildren } from 'hono/jsx'
import type { Session } from '../session.js'

export type Section = 'quarantine' | 'decisions' | 'health' | 'policy' | 'none'

export interface PageProps {
  readonly title: string
  readonly section: Section
  /** Absent on the sign-in page. */
  readonly session?: Session
  /** The sections this build of the console has pages for, in the menu's order. */
  readonly sections?: readonly Exclude<Section, 'none'>[]
}

const SECTION_NAMES: Record<Exclude<Section, 'none'>, string> = {
  quarantine: 'Quarantine',
  decisions: 'Decisions',
  health: 'Health',
  policy: 'Policy',
}

export const Page: FC<PropsWithChildren<PageProps>> = ({ title, section, session, sections, children }) => (
  <html lang="en">
    <head>
      <meta charset="utf-8" />
      <meta name="viewport" content="width=device-width, initial-scale=1" />
      <title>{`${title} · Customs`}</title>
      <link rel="stylesheet" href="/console/static/console.css" />
    </head>
    <body>
      <header class="top">
        <span class="brand">Customs</span>
        {session !== undefined && (
          <nav>
            {(sections ?? []).map((s) => (
              <a href={`/console/${s}`} class={s === section ? 'current' : ''}>
                {SECTION_NAMES[s]}
              </a>
            ))}
          </nav>
        )}
        {session !== undefined && (
          <div class="who">
            <span data-testid="who">
              {session.name} ({session.role})
            </span>
            <form method="post" action="/console/sign-out">
              <CsrfField session={session} />
              <button type="submit">Sign out</button>
            </form>
          </div>
        )}
      </header>
      <main>{children}</main>
    </body>
  </html>
)

export const CsrfField: FC<{ session: Session }> = ({ session }) => (
  <input type="hidden" name="_csrf" value={session.csrf} />
)

export const Flash: FC<{ kind: 'ok' | 'error'; children?: Child }> = ({ kind, children }) => (
  <div class={`flash ${kind}`} role={kind === 'error' ? 'alert' : 'status'}>
    {children}
  </div>
)

const TONES = ['detained', 'released', 'revoked', 'purged', 'ok', 'bad', 'warn', 'open', 'closed', 'half-open', 'cleared']

/** A state or outcome as a coloured badge; the class is chosen from a fixed list. */
export const Badge: FC<{ value: string; tone?: string }> = ({ value, tone }) => {
  const look = tone ?? value
  return <span class={`badge ${TONES.includes(look) ? look : 'warn'}`}>{value}</span>
}

/** Milliseconds since the epoch (or an ISO string) as a UTC time a person reads. */
export function when(value: number | string | undefined): string {
  if (value === undefined) return ''
  const date = new Date(value)
  if (Number.isNaN(date.getTime())) return String(value)
  return `${date.toISOString().slice(0, 19).replace('T', ' ')} UTC`
}

/** How long ago, roughly, for lists. */
export function ago(ms: number, now: number): string {
  const s = Math.max(0, Math.round((now - ms) / 1000))
  if (s < 90) return `${s}s ago`
  if (s < 90 * 60) return `${Math.round(s / 60)}m ago`
  if (s < 36 * 3600) return `${Math.round(s / 3600)}h ago`
  return `${Math.round(s / 86400)}d ago`
}

/** A digest shortened for tables; the full value is in the title and the link. */
export function shortDigest(digest: string): string {
  const [algorithm, hex] = digest.split(':')
  return hex === undefined ? digest : `${algorithm}:${hex.slice(0, 12)}`
}

/** The console page of one quarantine record. */
export function recordHref(upstream: string, repository: string, digest: string): string {
  return `/console/quarantine/${encodeURIComponent(upstream)}/${encodeURIComponent(digest)}?repository=${encodeURIComponent(repository)}`
}

/** One `policy 'p' rule 'r': why` reason split into its parts; other reasons whole. */
export function splitReason(reason: string): { policy?: string; rule?: string; why: string } {
  const match = /^policy '([^']*)' rule '([^']*)': ([\s\S]*)$/.exec(reason)
  if (match === null) return { why: reason }
  return { policy: match[1] as string, rule: match[2] as string, why: match[3] as string }
}

/** The page's HTML document. */
export function documentOf(page: Child): string {
  return `<!DOCTYPE html>${String(page)}`
}
