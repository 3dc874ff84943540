import net from "node:net";
import { watchEngine } from "../../../src/pulumi/engineWatch";

const listen = () =>
  new Promise<net.Server>((resolve) => {
    const server = net.createServer((s) => s.destroy());
    server.listen(0, "127.0.0.1", () => resolve(server));
  });
const portOf = (s: net.Server) => (s.address() as net.AddressInfo).port;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test("the signal aborts once the engine's port refuses connections twice in a row, naming the address", async () => {
  const server = await listen();
  const port = portOf(server);
  const watch = watchEngine(`127.0.0.1:${port}`, 50);
  await sleep(300);
  expect(watch.signal.aborted).toBe(false);
  await new Promise((r) => server.close(r));
  for (let i = 0; i < 40 && !watch.signal.aborted; i++) await sleep(50);
  expect(watch.signal.aborted).toBe(true);
  expect((watch.signal.reason as Error).message).toBe(`the Pulumi engine (127.0.0.1:${port}) is gone: the pulumi process was stopped`);
});

test("stopped before the engine goes: never aborts", async () => {
  const server = await listen();
  const watch = watchEngine(`127.0.0.1:${portOf(server)}`, 50);
  watch.stop();
  await new Promise((r) => server.close(r));
  await sleep(400);
  expect(watch.signal.aborted).toBe(false);
});

test.each([undefined, "", "example.org:80", "127.0.0.1", "/tmp/sock", "127.0.0.1:80; rm -rf /"])(
  "no engine address (%p): a signal that never aborts",
  async (address) => {
    const watch = watchEngine(address, 20);
    await sleep(100);
    expect(watch.signal.aborted).toBe(false);
    watch.stop();
  },
);
