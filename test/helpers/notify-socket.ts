// A systemd notify socket for tests: a unix datagram socket, which Node
// cannot bind, so python3 listens on it and prints what it receives.
import { spawn } from 'node:child_process';

const LISTENER = `
import socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
print('ready', flush=True)
s.settimeout(0.2)
end = time.time() + float(sys.argv[2])
while time.time() < end:
    try:
        print(s.recv(4096).decode().replace('\\n', ' '), flush=True)
    except socket.timeout:
        pass
`;

/** Listens on `socketPath` for `seconds`; resolves once listening, `messages` once done. */
export async function listenForNotify(socketPath: string, seconds: number): Promise<{ messages: Promise<string[]> }> {
  const child = spawn('python3', ['-c', LISTENER, socketPath, String(seconds)], { stdio: ['ignore', 'pipe', 'inherit'] });
  const lines: string[] = [];
  let onReady: () => void = () => undefined;
  const ready = new Promise<void>((resolve) => (onReady = resolve));
  let buffered = '';
  child.stdout.on('data', (chunk: Buffer) => {
    buffered += chunk.toString();
    const parts = buffered.split('\n');
    buffered = parts.pop() ?? '';
    for (const line of parts) {
      if (line === 'ready') onReady();
      else lines.push(line);
    }
  });
  child.on('exit', () => onReady());
  await ready;
  return { messages: new Promise((resolve) => child.on('exit', () => resolve(lines))) };
}
