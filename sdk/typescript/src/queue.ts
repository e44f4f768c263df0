/**
 * A push-based async iterable: the request stream of a bidirectional call.
 * `push` resolves once the consumer has taken the value, which passes the
 * transport's backpressure back to the sender, and rejects if the call ends
 * first.
 * @internal
 */
export class RequestQueue<T> implements AsyncIterable<T> {
  private readonly items: { value: T; taken: () => void; dropped: (err: Error) => void }[] = [];
  private waiting: ((r: IteratorResult<T>) => void) | undefined;
  private closed = false;

  /** Queues a value; resolves when the consumer has taken it. */
  push(value: T): Promise<void> {
    if (this.closed) {
      return Promise.reject(new Error("mediastream: the stream's input is closed"));
    }
    return new Promise((taken, dropped) => {
      if (this.waiting) {
        const resolve = this.waiting;
        this.waiting = undefined;
        resolve({ value, done: false });
        taken();
      } else {
        this.items.push({ value, taken, dropped });
      }
    });
  }

  /** Ends the iterable once the queued values are taken. */
  close(): void {
    this.closed = true;
    if (this.waiting && this.items.length === 0) {
      const resolve = this.waiting;
      this.waiting = undefined;
      resolve({ value: undefined, done: true });
    }
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<T> {
    try {
      for (;;) {
        const next = await this.take();
        if (next.done) {
          return;
        }
        yield next.value;
      }
    } finally {
      // The consumer stopped (the call ended): fail the senders still waiting.
      this.closed = true;
      for (const item of this.items.splice(0)) {
        item.dropped(new Error("mediastream: the stream has ended"));
      }
    }
  }

  private take(): Promise<IteratorResult<T>> {
    const item = this.items.shift();
    if (item) {
      item.taken();
      return Promise.resolve({ value: item.value, done: false });
    }
    if (this.closed) {
      return Promise.resolve({ value: undefined, done: true });
    }
    return new Promise((resolve) => {
      this.waiting = resolve;
    });
  }
}
