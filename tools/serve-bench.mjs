// SPDX-License-Identifier: MIT
// serve-bench.mjs - how fast `modelhost serve` is, against `modelhost
// generate` in the same session (Node, no packages):
//   node tools/serve-bench.mjs -m DIR [-t 2] [--clients 8] [-p 16] [-n 128] [-r 2]
//   node tools/serve-bench.mjs --url http://127.0.0.1:PORT [options as above]
// Starts `modelhost serve -m DIR --parallel CLIENTS` on a free loopback port
// and, r times, alternating: generate alone; one streaming client; CLIENTS
// at once (aggregate generated t/s from the first request to the last token,
// and the sum of their decode rates); CLIENTS decoding while one more arrives
// (its time to first token, against the idle one's: it is sent once all
// CLIENTS have streamed their first token, so they decode when it arrives).
// Prompts are P token ids, completions N tokens (ignore_eos), greedy.
// With --url it measures a server already running there instead (another
// OpenAI-compatible server, llama.cpp's llama-server say, started with as
// many slots as it should have), without the generate runs.
// Every request has a connection of its own, and `generate` runs without
// blocking the event loop: a connection kept alive by Node's agent while a
// synchronous child ran longer than the server's --timeout (60 s, a slow
// generate on a loaded machine) was closed by the server, and the next
// request sent on it died with "socket hang up".
import { spawn } from 'node:child_process';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const args = process.argv.slice(2);
const opt = (k, d) => { const i = args.indexOf(k); return i >= 0 ? args[i + 1] : d; };
const dir = opt('-m'), url = opt('--url') && new URL(opt('--url'));
if (!dir === !url) {
	console.error('usage: node tools/serve-bench.mjs -m DIR | --url URL [-t 2] [--clients 8] [-p 16] [-n 128] [-r 2]');
	process.exit(1);
}
const threads = opt('-t', '2'), clients = +opt('--clients', '8'), P = +opt('-p', '16'),
	N = +opt('-n', '128'), R = +opt('-r', '2');
const here = path.dirname(fileURLToPath(import.meta.url));
const mh = opt('--modelhost', path.join(here, '..', 'modelhost'));

function prompt(k) { // P ids, different per client
	const ids = [1]; // ids below 500: any vocabulary this is run on
	for (let i = 1; i < P; i++) ids.push(100 + ((k * 37 + i * 11) % 400));
	return ids;
}

// resolves { ttft, tokens, tps } from the client's side; onFirst() runs at its first token
function stream(port, ids, onFirst = () => {}) {
	return new Promise((resolve, reject) => {
		const body = JSON.stringify({ prompt: ids, max_tokens: N, temperature: 0, ignore_eos: true, stream: true,
			stream_options: { include_usage: true } });
		const t0 = performance.now();
		let first = 0, last = 0, events = 0, buf = '', done = false, tokens = 0;
		const rq = http.request({ host, port, path: '/v1/completions', method: 'POST',
			agent: false, headers: { 'Content-Type': 'application/json' } }, (res) => {
			res.setEncoding('utf8');
			res.on('data', (d) => {
				buf += d;
				let i;
				while (res.statusCode === 200 && (i = buf.indexOf('\n\n')) >= 0) {
					const ev = buf.slice(0, i);
					buf = buf.slice(i + 2);
					if (ev.startsWith('data: {') && ev.includes('"finish_reason":null')) {
						const now = performance.now();
						if (!first) {
							first = now;
							onFirst();
						}
						last = now;
						events++;
					}
					const u = ev.match(/"completion_tokens":(\d+)/);
					if (u) tokens = +u[1];
					if (ev === 'data: [DONE]') done = true;
				}
			});
			res.on('end', () => {
				if (res.statusCode !== 200)
					reject(new Error(`HTTP ${res.statusCode}: ${buf.slice(0, 300)}`));
				else if (!done || tokens !== N)
					reject(new Error(`the stream ended after ${tokens} of ${N} tokens${done ? '' : ', without [DONE]'}: ${buf.slice(0, 300)}`));
				else
					resolve({ ttft: (first - t0) / 1e3, events, tokens, t0, last,
						tps: events > 1 ? (events - 1) / ((last - first) / 1e3) : 0 });
			});
		});
		rq.on('error', reject);
		rq.end(body);
	});
}

function generate() { // generate's t/s, without blocking the event loop
	const ids = prompt(0).join(',');
	return new Promise((resolve, reject) => {
		const g = spawn(mh, ['generate', '-m', dir, '--ids', ids, '-n', String(N), '--temp', '0',
			'-t', threads], { stdio: ['ignore', 'ignore', 'pipe'] });
		let out = '';
		g.stderr.on('data', (d) => { out += d; });
		g.on('error', reject);
		g.on('close', () => {
			const m = out.match(/generated (\d+) tokens \(([\d.]+) t\/s\)/);
			m ? resolve(+m[2]) : reject(new Error(`generate: ${out.trim().split('\n').pop()}`));
		});
	});
}

const host = url ? url.hostname : '127.0.0.1';
const srv = !url && spawn(mh, ['serve', '-m', dir, '--port', '0', '--parallel', String(clients + 1), '-t', threads],
	{ stdio: ['ignore', 'ignore', 'pipe'] });
const port = url ? +url.port : await new Promise((resolve, reject) => {
	let log = '';
	srv.stderr.on('data', (d) => {
		log += d;
		const m = log.match(/listening on http:\/\/127\.0\.0\.1:(\d+)\//);
		if (m && log.includes('serve: ready')) resolve(+m[1]);
		if (log.includes('serve: ready')) process.stderr.write(d); // the server's own messages
	});
	srv.on('exit', () => reject(new Error(log)));
});
const fmt = (x) => x.toFixed(2);
try {
	await stream(port, prompt(0)); // warm up: the weights in memory
	for (let r = 0; r < R; r++) {
		const gen = url ? 0 : await generate();
		// the solo and the late prompts are new in each run, so that a server
		// which caches prompts (llama-server) prefills them as ours does
		const solo = await stream(port, prompt(1000 + r));
		const t0 = performance.now();
		const all = await Promise.all([...Array(clients).keys()].map((k) => stream(port, prompt(k))));
		const secs = (Math.max(...all.map((a) => a.last)) - t0) / 1e3;
		const agg = all.reduce((s, a) => s + a.tokens, 0) / secs;
		// their decode rates summed, each from its first token on: what one client's rate
		// is measured as (agg counts the eight prompts' prefill too)
		const dec = all.reduce((s, a) => s + a.tps, 0);
		// one more arrives while the others decode: once each has its first token (their
		// prompts are prefilled), and one decode step or so later
		let started = 0, allStarted;
		const decoding = new Promise((res) => { allStarted = res; });
		const busy = [...Array(clients).keys()].map((k) =>
			stream(port, prompt(k), () => { if (++started === clients) allStarted(); }));
		await decoding;
		await new Promise((res) => setTimeout(res, 1000 * Math.max(0.2, (secs / N) * 2)));
		const late = await stream(port, prompt(2000 + r));
		await Promise.all(busy);
		console.log(`run ${r + 1}: ` + (url ? `${url.host}, 1 client: ${fmt(solo.tps)} t/s, ` :
			`generate ${fmt(gen)} t/s | serve, 1 client: ${fmt(solo.tps)} t/s ` +
			`(decode time ${fmt(100 * (gen / solo.tps - 1))}% over generate's), `) + `TTFT ${fmt(solo.ttft)} s | ` +
			`${clients} clients: ${fmt(agg)} t/s aggregate (${fmt(agg / solo.tps)}x one client), ` +
			`decoding ${fmt(dec)} t/s (${fmt(dec / solo.tps)}x) | ` +
			`TTFT while ${clients} decode: ${fmt(late.ttft)} s (${fmt(late.ttft / solo.ttft)}x idle)`);
	}
} catch (e) {
	console.error(`serve-bench: ${e.message}`);
	process.exitCode = 1;
} finally {
	if (srv)
		srv.kill('SIGTERM');
}
