// The sign-in page, the policy page, and the page any refusal or failure is shown on.

import type { FC } from 'hono/jsx'
import type { PolicyStatus } from '../api.js'
import { Badge, Flash, when } from './layout.js'

export const SignIn: FC<{ error?: string; notice?: string }> = ({ error, notice }) => (
  <div class="signin card">
    <h1>Sign in to Customs</h1>
    {error !== undefined && <Flash kind="error">{error}</Flash>}
    {notice !== undefined && <Flash kind="ok">{notice}</Flash>}
    <form class="stack" method="post" action="/console/sign-in">
      <label>
        Admin token
        <input type="password" name="token" required maxlength={512} autocomplete="current-password" />
      </label>
      <div>
        <button type="submit">Sign in</button>
      </div>
    </form>
    <p class="muted">
      A token from <code>admin.tokens</code>; its role decides what you may see and do.
    </p>
  </div>
)

export const PolicyPage: FC<{ policy: PolicyStatus }> = ({ policy }) => (
  <>
    <h1>Policy</h1>
    <div class="card">
      <dl class="facts">
        <dt>Revision in force</dt>
        <dd class="mono" data-testid="revision">
          {policy.revision}
        </dd>
        <dt>Policies</dt>
        <dd>{policy.policies}</dd>
        <dt>Exceptions</dt>
        <dd>{policy.exceptions}</dd>
        <dt>When no policy matches</dt>
        <dd>{typeof policy.unmatched === 'string' ? policy.unmatched : JSON.stringify(policy.unmatched)}</dd>
        {policy.path !== undefined && (
          <>
            <dt>Folder</dt>
            <dd class="mono">{policy.path}</dd>
          </>
        )}
      </dl>
    </div>
    <h2>Reloads</h2>
    {policy.reloads.length === 0 ? (
      <p class="muted">No reload since start.</p>
    ) : (
      <table data-testid="reloads">
        <thead>
          <tr>
            <th>When</th>
            <th>Result</th>
            <th>Revision</th>
            <th>Error</th>
          </tr>
        </thead>
        <tbody>
          {[...policy.reloads].reverse().map((r) => (
            <tr>
              <td>{when(r.at)}</td>
              <td>
                <Badge value={r.ok ? 'ok' : 'bad'} />
              </td>
              <td class="mono">{r.revision}</td>
              <td>{r.error ?? ''}</td>
            </tr>
          ))}
        </tbody>
      </table>
    )}
  </>
)

export const Problem: FC<{ title: string; message: string; back?: string }> = ({ title, message, back }) => (
  <>
    <h1>{title}</h1>
    <Flash kind="error">{message}</Flash>
    {back !== undefined && <a href={back}>Back</a>}
  </>
)
