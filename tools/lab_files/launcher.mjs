// A stand-in for n8nio/runners' Go task-runner-launcher, whose module the Go proxy refuses (403), for the
// JavaScript runner only (no Python runner in the lab image). What the launcher does and this repeats:
// - exchange the shared auth token for a one-time grant token at the broker (POST /runners/auth, as
//   n8n's task-broker-server does it: body {"token"}, answer {"data":{"token"}});
// - start @n8n/task-runner's dist/start.js with N8N_RUNNERS_GRANT_TOKEN and restart it when it exits;
// - answer GET /healthz on N8N_RUNNERS_LAUNCHER_HEALTH_CHECK_PORT (default 5680).
// Unlike the Go launcher it reports 503 while the broker refuses the token, so a wrong token shows as
// an unhealthy container in the lab.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';

const runnerStart = '/opt/n8nRunners/node_modules/@n8n/task-runner/dist/start.js';
const broker = process.env.N8N_RUNNERS_TASK_BROKER_URI ?? 'http://127.0.0.1:5679';
const healthPort = Number(process.env.N8N_RUNNERS_LAUNCHER_HEALTH_CHECK_PORT ?? 5680);
let healthy = false;

function authToken() {
  const file = process.env.N8N_RUNNERS_AUTH_TOKEN_FILE;
  if (file) return readFileSync(file, 'utf8').trim();
  const token = process.env.N8N_RUNNERS_AUTH_TOKEN;
  if (!token) {
    console.error('launcher: neither N8N_RUNNERS_AUTH_TOKEN nor N8N_RUNNERS_AUTH_TOKEN_FILE is set');
    process.exit(1);
  }
  return token;
}

async function grantToken(token) {
  const response = await fetch(`${broker}/runners/auth`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ token }),
    signal: AbortSignal.timeout(10000),
  });
  if (response.status === 401 || response.status === 403) {
    throw new Error(`the broker at ${broker} refused the auth token (N8N_RUNNERS_AUTH_TOKEN): ${response.status}`);
  }
  if (!response.ok) throw new Error(`the broker at ${broker} answered ${response.status}`);
  return (await response.json()).data.token;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function loop() {
  let token;
  try {
    token = authToken();
  } catch (error) {
    console.error(`launcher: cannot read the auth token: ${error.message}`);
    process.exit(1);
  }
  for (;;) {
    let grant;
    try {
      grant = await grantToken(token);
    } catch (error) {
      healthy = false;
      console.error(`launcher: ${error.message}; retrying in 5 s`);
      await sleep(5000);
      continue;
    }
    console.log('launcher: grant token received, starting the JavaScript runner');
    const child = spawn(process.execPath, [runnerStart], {
      env: { ...process.env, N8N_RUNNERS_GRANT_TOKEN: grant, N8N_RUNNERS_AUTH_TOKEN: '' },
      stdio: 'inherit',
    });
    healthy = true;
    const code = await new Promise((resolve) => child.on('exit', resolve));
    healthy = false;
    console.error(`launcher: the runner exited (${code}); restarting`);
    await sleep(1000);
  }
}

createServer((req, res) => {
  const ok = req.url === '/healthz' && healthy;
  res.writeHead(ok ? 200 : 503, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ status: ok ? 'ok' : 'unavailable' }));
}).listen(healthPort, '0.0.0.0');
for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => process.exit(0));
loop();
