// Async iterables over flowrpc's batched streams and paged lists.

/**
 * The items of each message of a stream, one at a time. flowrpc's bulk streams carry many runs
 * per message (cheaper on the wire); callers mostly want one run at a time.
 */
export async function* flatten<M, T>(
  messages: AsyncIterable<M>,
  items: (message: M) => readonly T[],
): AsyncIterable<T> {
  for await (const message of messages) yield* items(message);
}

/** One page of a list: its items and the token of the next page ("" after the last). */
export interface Page<T> {
  items: readonly T[];
  nextPageToken: string;
}

/** Every item of a paged list, fetching the next page only when the previous one is used up. */
export async function* pages<T>(fetch: (pageToken: string) => Promise<Page<T>>): AsyncIterable<T> {
  let token = "";
  do {
    const page = await fetch(token);
    yield* page.items;
    token = page.nextPageToken;
  } while (token);
}
