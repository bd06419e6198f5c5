import { connect, createServer, type Server, type Socket } from 'node:net';

/**
 * A TCP forwarder on loopback, standing where a load balancer or a virtual IP
 * stands in front of a replicated database: clients keep one address, the
 * test moves it to another server and cuts the connections that were open.
 */
export interface TcpProxy {
  readonly port: number;
  /** Sends new connections to `port` and closes every open one (as a failover does). */
  retarget(port: number): void;
  close(): Promise<void>;
}

export async function startTcpProxy(targetPort: number): Promise<TcpProxy> {
  let target = targetPort;
  const open = new Set<Socket>();
  const server: Server = createServer((client) => {
    const upstream = connect(target, '127.0.0.1');
    open.add(client);
    open.add(upstream);
    const end = () => {
      client.destroy();
      upstream.destroy();
      open.delete(client);
      open.delete(upstream);
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as { port: number }).port,
    retarget(port) {
      target = port;
      for (const s of [...open]) s.destroy();
      open.clear();
    },
    async close() {
      for (const s of [...open]) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
