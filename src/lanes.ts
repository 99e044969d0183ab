// Bounded concurrency: work over a list with at most so many items in flight, for reads that are
// independent (an upstream's round trips, a walk over state) but must not all start at once.

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
