// Enqueue the bench's payloads for BullMQ with BullMQ's own Queue.addBulk (its job format),
// before any worker starts. Usage: node enqueue.mjs <payloads.json>
// Env: REDIS_URL, QUEUE_NAME. Job options as the original's webhook: 5 attempts, exponential backoff.
import { readFileSync } from "node:fs";
import { Queue } from "bullmq";

const payloads = JSON.parse(readFileSync(process.argv[2], "utf8"));
const queue = new Queue(process.env.QUEUE_NAME, { connection: redisOptions(process.env.REDIS_URL) });
const opts = { attempts: 5, backoff: { type: "exponential", delay: 1000 } };
for (let i = 0; i < payloads.length; i += 500) {
  await queue.addBulk(
    payloads.slice(i, i + 500).map((data) => ({
      name: "process-webhook-message",
      data,
      opts,
    })),
  );
}
console.log(JSON.stringify({ enqueued: payloads.length, waiting: await queue.getWaitingCount() }));
await queue.close();

function redisOptions(url) {
  const u = new URL(url);
  return {
    host: u.hostname,
    port: Number(u.port || 6379),
    db: Number(u.pathname.slice(1) || 0),
    maxRetriesPerRequest: null,
  };
}
