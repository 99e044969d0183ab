// Runs of a task that must not overlap, in the order asked. A reload (SIGHUP, a watched folder)
// reads files and then puts what it read in force; two reloads at once could finish out of
// order, and the one that read older files would win. Joining the one under way instead would
// lose a request made after it had read its files. So each call waits for the one before it.

/** `task` wrapped so that each call starts when the previous call's run has settled. */
export function oneAtATime<T>(task: () => Promise<T>): () => Promise<T> {
  let last: Promise<unknown> = Promise.resolve()
  return () => {
    const run = last.then(task)
    last = run.catch(() => undefined)
    return run
  }
}
