// The original stack's webhook-processor (workers README: BullMQ queue `webhook-processing`,
// concurrency 5, `pg`, `libphonenumber-js`) doing exactly livesell's inbound job on livesell's
// schema, for bench/vs_original.py: the statements of application/inbound.py and
// application/live_sessions.py as adapters/sqlalchemy/repositories.py issues them, in one
// transaction per message. Not a port of the original code: our model of it, to measure the stack.
//
// Env: DATABASE_URL, REDIS_URL, QUEUE_NAME, CONCURRENCY (5), PG_POOL (5),
//      LIVE_SESSION_INACTIVITY_WINDOW_MINUTES (45).
import { randomBytes } from "node:crypto";
import { Worker } from "bullmq";
import pg from "pg";
import { parsePhoneNumberWithError } from "libphonenumber-js/max";

const CONCURRENCY = Number(process.env.CONCURRENCY || 5);
const WINDOW_MS = Number(process.env.LIVE_SESSION_INACTIVITY_WINDOW_MINUTES || 45) * 60_000;
const RACE_RETRIES = 5; // application/inbound.py
const SESSION_RACE_RETRIES = 8; // application/live_sessions.py

// timestamptz comes back as a JS Date (pg's default parser): what the comparisons need.
const pool = new pg.Pool({
  connectionString: process.env.DATABASE_URL,
  max: Number(process.env.PG_POOL || 5),
});

function log(level, message, context) {
  process.stdout.write(
    JSON.stringify({ timestamp: new Date().toISOString(), level, logger: "Worker", message, ...context }) + "\n",
  );
}

// Ids of the same shape as adapters/system/clock.py: 48-bit milliseconds then 80 random bits,
// 26 Crockford base-32 characters.
const ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
function newId() {
  let value = (BigInt(Date.now()) << 80n) | BigInt("0x" + randomBytes(10).toString("hex"));
  const chars = [];
  for (let i = 0; i < 26; i++) {
    chars.push(ALPHABET[Number(value & 31n)]);
    value >>= 5n;
  }
  return chars.reverse().join("");
}

function normalisePhone(raw, region) {
  const value = raw.startsWith("whatsapp:") ? raw.slice("whatsapp:".length).trim() : raw.trim();
  const parsed = parsePhoneNumberWithError(value, region.toUpperCase());
  if (!parsed.isValid()) throw new Error("not a valid number");
  return parsed.number;
}

class Duplicate extends Error {}

function eventRow(type, tenantId, subjectId, correlationId, at, payload) {
  return [tenantId, type, subjectId, JSON.stringify(payload), correlationId, at];
}

async function insertEvents(client, rows) {
  const values = rows.map((_, r) => `($${r * 6 + 1}, $${r * 6 + 2}, $${r * 6 + 3}, $${r * 6 + 4}, $${r * 6 + 5}, $${r * 6 + 6})`);
  await client.query(
    `INSERT INTO event_logs (tenant_id, event_type, subject_id, payload, correlation_id, created_at) VALUES ${values.join(", ")}`,
    rows.flat(),
  );
}

// application/live_sessions.py attach_to_current_session
async function attach(client, tenantId, sender, now, correlationId, events) {
  for (let i = 0; i < SESSION_RACE_RETRIES; i++) {
    let active = (
      await client.query(
        "SELECT id, tenant_id, status, started_at, last_activity_at, closed_at, close_reason, seller_message_count, client_message_count FROM live_sessions WHERE tenant_id = $1 AND status = 'active'",
        [tenantId],
      )
    ).rows[0];
    if (active && active.last_activity_at.getTime() < now.getTime() - WINDOW_MS) {
      if (sender === "client") return null;
      const closed = await client.query(
        "UPDATE live_sessions SET status = 'closed', closed_at = $1, close_reason = 'inactivity' WHERE id = $2 AND tenant_id = $3 AND status = 'active' AND last_activity_at = $4 AND seller_message_count = $5 AND client_message_count = $6",
        [now, active.id, tenantId, active.last_activity_at, active.seller_message_count, active.client_message_count],
      );
      if (closed.rowCount !== 1) continue;
      events.push(
        eventRow("live_session.closed", tenantId, active.id, correlationId, now, {
          reason: "inactivity",
          startedAt: active.started_at.toISOString(),
          lastActivityAt: active.last_activity_at.toISOString(),
          closedAt: now.toISOString(),
          durationSeconds: (now - active.started_at) / 1000,
          sellerMessageCount: active.seller_message_count,
          clientMessageCount: active.client_message_count,
        }),
      );
      active = undefined;
    }
    if (!active) {
      if (sender === "client") return null;
      const id = newId();
      // The partial unique index live_sessions_tenant_id_active_key: a lost race inserts nothing.
      const opened = await client.query(
        "INSERT INTO live_sessions (id, tenant_id, status, started_at, last_activity_at, closed_at, close_reason, seller_message_count, client_message_count) VALUES ($1, $2, 'active', $3, $3, NULL, NULL, 1, 0) ON CONFLICT DO NOTHING RETURNING id",
        [id, tenantId, now],
      );
      if (opened.rowCount === 0) continue;
      events.push(eventRow("live_session.opened", tenantId, id, correlationId, now, { startedAt: now.toISOString() }));
      return id;
    }
    const counter = sender === "seller" ? "seller_message_count" : "client_message_count";
    const touched = await client.query(
      `UPDATE live_sessions SET last_activity_at = greatest(live_sessions.last_activity_at, $1), ${counter} = live_sessions.${counter} + 1 WHERE live_sessions.id = $2 AND live_sessions.tenant_id = $3 AND live_sessions.status = 'active' RETURNING live_sessions.id, live_sessions.tenant_id, live_sessions.status, live_sessions.started_at, live_sessions.last_activity_at, live_sessions.closed_at, live_sessions.close_reason, live_sessions.seller_message_count, live_sessions.client_message_count`,
      [now, active.id, tenantId],
    );
    if (touched.rowCount === 1) return touched.rows[0].id;
  }
  throw new Error(`could not attach to a live session of tenant ${tenantId}`);
}

// application/inbound.py process_inbound_message, the processed path (the bench sends no bad input)
async function processMessage(m) {
  const now = new Date();
  for (let attempt = 0; attempt < RACE_RETRIES; attempt++) {
    const client = await pool.connect();
    let done = false;
    try {
      await client.query("BEGIN");
      const tenant = (
        await client.query("SELECT id, name, whatsapp_number, default_region, created_at FROM tenants WHERE id = $1", [m.tenantId])
      ).rows[0];
      if (!tenant) throw new Error(`unknown tenant ${m.tenantId}`);
      const fromE164 = normalisePhone(m.from, tenant.default_region);
      const record = (
        await client.query(
          "SELECT id, tenant_id, provider_message_id, from_phone, from_e164, to_phone, body, status, message_type, live_session_id, correlation_id, profile_name, num_media, media_urls, received_at, processed_at FROM inbound_messages WHERE tenant_id = $1 AND provider_message_id = $2",
          [tenant.id, m.providerMessageId],
        )
      ).rows[0];
      if (record && record.status === "processed") {
        await client.query("ROLLBACK");
        done = true;
        return { ...m, messageType: record.message_type, liveSessionId: record.live_session_id, duplicate: true };
      }
      const seller = (
        await client.query("SELECT id, tenant_id, phone_e164, name, created_at FROM sellers WHERE tenant_id = $1 AND phone_e164 = $2", [tenant.id, fromE164])
      ).rows[0];
      const sender = seller ? "seller" : "client";
      const events = [];
      const sessionId = await attach(client, tenant.id, sender, now, m.correlationId, events);
      const id = record ? record.id : newId();
      const row = [
        id, tenant.id, m.providerMessageId, m.from, fromE164, m.to ?? null, m.body, sender, sessionId,
        m.correlationId, m.profileName ?? null, m.numMedia ?? 0, JSON.stringify(m.mediaUrls ?? []),
        m.receivedAt ? new Date(m.receivedAt) : now, now,
      ];
      let stored;
      if (!record) {
        stored = await client.query(
          "INSERT INTO inbound_messages (id, tenant_id, provider_message_id, from_phone, from_e164, to_phone, body, status, message_type, live_session_id, correlation_id, profile_name, num_media, media_urls, received_at, processed_at, forwarded, frequently_forwarded, media_content_types, referral, provider_params, input_flags) VALUES ($1, $2, $3, $4, $5, $6, $7, 'processed', $8, $9, $10, $11, $12, $13, $14, $15, false, false, 'null', 'null', 'null', 'null') ON CONFLICT DO NOTHING RETURNING id",
          row,
        );
      } else {
        stored = await client.query(
          "UPDATE inbound_messages SET from_phone = $4, from_e164 = $5, to_phone = $6, body = $7, status = 'processed', message_type = $8, live_session_id = $9, correlation_id = $10, profile_name = $11, num_media = $12, media_urls = $13, received_at = $14, processed_at = $15, forwarded = false, frequently_forwarded = false, media_content_types = 'null', referral = 'null', provider_params = 'null', input_flags = 'null' WHERE tenant_id = $2 AND provider_message_id = $3 AND id = $1 AND status = 'received'",
          row,
        );
      }
      if (stored.rowCount !== 1) throw new Duplicate();
      events.push(
        eventRow("message.classified", tenant.id, id, m.correlationId, now, {
          providerMessageId: m.providerMessageId,
          messageType: sender,
          liveSessionId: sessionId,
        }),
      );
      await insertEvents(client, events);
      await client.query("COMMIT");
      done = true;
      return { ...m, messageType: sender, liveSessionId: sessionId };
    } catch (error) {
      if (!done) await client.query("ROLLBACK").catch(() => {});
      if (error instanceof Duplicate) continue;
      throw error;
    } finally {
      client.release();
    }
  }
  throw new Error(`inbound message ${m.providerMessageId} kept racing`);
}

const worker = new Worker(
  process.env.QUEUE_NAME,
  async (job) => {
    const started = Date.now();
    const enriched = await processMessage(job.data);
    log("info", "Job completed", {
      jobId: job.id,
      correlationId: job.data.correlationId,
      tenantId: job.data.tenantId,
      messageType: enriched.messageType,
      processingTimeMs: Date.now() - started,
    });
    return enriched;
  },
  {
    connection: redisOptions(process.env.REDIS_URL),
    concurrency: CONCURRENCY,
  },
);
worker.on("failed", (job, error) =>
  log("error", "Job failed", { jobId: job?.id, correlationId: job?.data?.correlationId, error: String(error), attemptsMade: job?.attemptsMade }),
);
worker.on("error", (error) => log("error", "Worker error", { error: String(error) }));
worker.on("ready", () => log("info", "Worker started successfully", { concurrency: CONCURRENCY }));

async function shutdown(signal) {
  log("info", "Shutting down", { signal });
  await worker.close();
  await pool.end();
  process.exit(0);
}
process.on("SIGTERM", () => shutdown("SIGTERM"));
process.on("SIGINT", () => shutdown("SIGINT"));

function redisOptions(url) {
  const u = new URL(url);
  return {
    host: u.hostname,
    port: Number(u.port || 6379),
    db: Number(u.pathname.slice(1) || 0),
    maxRetriesPerRequest: null,
  };
}
