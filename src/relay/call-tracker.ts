/**
 * Counts the MCP requests the relay is handling, over every transport and session, so a graceful
 * shutdown can let them finish; once draining, new requests are answered with an error at once.
 *
 * It sits between a transport and its McpServer (`server.connect(tracker.wrap(transport))`): a request
 * counts from the moment it arrives until its response has been handed to the transport, is cancelled
 * by the client (the SDK sends no response then), or its transport closes (no response can go out).
 */
import type { Transport, TransportSendOptions } from "@modelcontextprotocol/sdk/shared/transport.js";
import {
  ErrorCode,
  isJSONRPCErrorResponse,
  isJSONRPCNotification,
  isJSONRPCRequest,
  isJSONRPCResultResponse,
  type JSONRPCMessage,
  type MessageExtraInfo,
  type RequestId,
} from "@modelcontextprotocol/sdk/types.js";

export const SHUTTING_DOWN_MESSAGE = "The relay is shutting down; try again once it is back.";

export class CallTracker {
  #inFlight = 0;
  #draining = false;
  #waiters: Array<() => void> = [];

  /** Requests received and not yet answered. */
  get inFlight(): number {
    return this.#inFlight;
  }


  /** The transport to connect an McpServer to; `inner` stays the one to feed (e.g. handleRequest). */
  wrap(inner: Transport): Transport {
    return new TrackedTransport(inner, {
      begin: () => {
        this.#inFlight += 1;
      },
      end: () => {
        this.#inFlight -= 1;
        if (this.#inFlight === 0) for (const w of this.#waiters.splice(0)) w();
      },
      draining: () => this.#draining,
    });
  }

  /**
   * From now on refuses new requests; resolves true once none is in flight, false if some still are
   * after `timeoutMs`.
   */
  drain(timeoutMs: number): Promise<boolean> {
    this.#draining = true;
    if (this.#inFlight === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        resolve(true);
      };
      const timer = setTimeout(() => {
        this.#waiters = this.#waiters.filter((w) => w !== done);
        resolve(false);
      }, timeoutMs);
      this.#waiters.push(done);
    });
  }
}

interface Hooks {
  begin(): void;
  end(): void;
  draining(): boolean;
}

class TrackedTransport implements Transport {
  onclose?: () => void;
  onerror?: (error: Error) => void;
  onmessage?: (message: JSONRPCMessage, extra?: MessageExtraInfo) => void;
  readonly #inner: Transport;
  readonly #hooks: Hooks;
  /** Request ids are per connection, so each transport keeps its own. */
  readonly #pending = new Set<RequestId>();

  constructor(inner: Transport, hooks: Hooks) {
    this.#inner = inner;
    this.#hooks = hooks;
    inner.onmessage = (message, extra) => this.#receive(message, extra);
    inner.onerror = (error) => this.onerror?.(error);
    inner.onclose = () => {
      for (const id of [...this.#pending]) this.#release(id);
      this.onclose?.();
    };
  }

  get sessionId(): string | undefined {
    return this.#inner.sessionId;
  }

  setProtocolVersion(version: string): void {
    this.#inner.setProtocolVersion?.(version);
  }

  start(): Promise<void> {
    return this.#inner.start();
  }

  close(): Promise<void> {
    return this.#inner.close();
  }

  async send(message: JSONRPCMessage, options?: TransportSendOptions): Promise<void> {
    const answered = isJSONRPCResultResponse(message) || isJSONRPCErrorResponse(message) ? message.id : undefined;
    try {
      await this.#inner.send(message, options);
    } finally {
      if (answered !== undefined) this.#release(answered);
    }
  }

  #receive(message: JSONRPCMessage, extra?: MessageExtraInfo): void {
    if (isJSONRPCRequest(message)) {
      if (this.#hooks.draining()) {
        const refusal: JSONRPCMessage = { jsonrpc: "2.0", id: message.id, error: { code: ErrorCode.ConnectionClosed, message: SHUTTING_DOWN_MESSAGE } };
        this.#inner.send(refusal, { relatedRequestId: message.id }).catch((err: unknown) => this.onerror?.(err instanceof Error ? err : new Error(String(err))));
        return;
      }
      if (!this.#pending.has(message.id)) {
        this.#pending.add(message.id);
        this.#hooks.begin();
      }
    } else if (isJSONRPCNotification(message) && message.method === "notifications/cancelled") {
      const id = (message.params as { requestId?: RequestId } | undefined)?.requestId;
      if (id !== undefined) this.#release(id);
    }
    this.onmessage?.(message, extra);
  }

  #release(id: RequestId): void {
    if (this.#pending.delete(id)) this.#hooks.end();
  }
}
