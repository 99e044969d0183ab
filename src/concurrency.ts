// Scheduling async work: runs of a task that must not overlap, and work over a list with a bound
// on how much is in flight.
//
// Runs that must not overlap, in the order asked: a reload (SIGHUP, a watched folder) reads files
// and then puts what it read in force; two reloads at once could finish out of order, and the one
// that read older files would win. Joining the one under way instead would lose a request made
// after it had read its files. So each call waits for the one before it.
//
// Bounded work: reads that are independent (an upstream's round trips, a walk over state) but
// must not all start at once.

/** `task` wrapped so that each call starts when the previous call's run has settled. */
export function oneAtATime<T>(task: () => Promise<T>): () => Promise<T> {
  let last: Promise<unknown> = Promise.resolve()
  return () => {
    const run = last.then(task)
    last = run.catch(() => undefined)
    return run
  }
}

/**
 * `work` over `items`, at most `limit` at a time, each started as a lane frees; the results in
 * the items' order. After a failure no item is started; once the started ones have settled, it
 * rejects with the first failure.
 */
export async function mapInLanes<T, R>(items: readonly T[], limit: number, work: (item: T) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length)
  let next = 0
  let failure: { error: unknown } | undefined
  const lane = async (): Promise<void> => {
    while (next < items.length && failure === undefined) {
      const at = next++
      try {
        results[at] = await work(items[at] as T)
      } catch (error) {
        failure ??= { error }
      }
    }
  }
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, lane))
  if (failure !== undefined) throw failure.error
  return results
}
