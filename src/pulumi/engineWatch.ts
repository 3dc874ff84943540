/**
 * Notices that the Pulumi engine that started this provider process is gone (the `pulumi` CLI
 * killed, the machine's session lost): the provider's plugins are not stopped with it, so a script
 * still running on a host would go on and change the host with no one to record it. With this
 * signal the SSH session is closed instead, and the host's script rolls its transaction back
 * (plan.ts: a lost connection puts everything back).
 *
 * The engine's address is the first argument of a provider plugin (`127.0.0.1:PORT`); it is gone
 * when two connection attempts in a row, `intervalMs` apart, are refused.
 *
 * @packageDocumentation
 */
import net from "node:net";

/** A signal that aborts when the engine stops answering, and a function that stops watching. */
export interface EngineWatch {
  signal: AbortSignal;
  stop: () => void;
}

/**
 * Watches the engine at `address` (`host:port`; default the plugin's first argument). Without a
 * usable address (not running as a plugin, e.g. unit tests) the signal never aborts.
 *
 * @param address the engine's gRPC address, `host:port` (default `process.argv[2]`)
 * @param intervalMs time between two checks, in milliseconds (default 2000)
 */
export function watchEngine(address: string | undefined = process.argv[2], intervalMs = 2000): EngineWatch {
  const controller = new AbortController();
  const m = /^(127\.0\.0\.1|localhost|\[::1\]):(\d{1,5})$/.exec(address ?? "");
  if (!m) return { signal: controller.signal, stop: () => undefined };
  const host = m[1] === "[::1]" ? "::1" : m[1];
  const port = Number(m[2]);
  let refused = 0;
  let stopped = false;
  let timer: ReturnType<typeof setInterval> | undefined;
  const check = () => {
    if (stopped) return;
    const socket = net.connect({ host, port });
    socket.setTimeout(1000);
    const done = (gone: boolean) => {
      socket.destroy();
      refused = gone ? refused + 1 : 0;
      if (refused >= 2 && !stopped) {
        stopped = true;
        clearInterval(timer);
        controller.abort(new Error(`the Pulumi engine (${address}) is gone: the pulumi process was stopped`));
      }
    };
    socket.once("connect", () => done(false));
    socket.once("timeout", () => done(false));
    socket.once("error", (e: NodeJS.ErrnoException) => done(e.code === "ECONNREFUSED"));
  };
  timer = setInterval(check, intervalMs);
  timer.unref();
  return {
    signal: controller.signal,
    stop: () => {
      stopped = true;
      clearInterval(timer);
    },
  };
}
