/**
 * Smoke test of the typed client against a live Tendril:
 *
 *     TENDRIL_URL=http://127.0.0.1:8080 TENDRIL_API_KEY=... node dist/smoke.js
 *
 * Lists the connector catalog, starts a Telegram connection, reads, renames, lists and deletes
 * it, then checks that reading it again fails with a typed error body. Prints a JSON summary and
 * exits 0, or prints what did not match and exits 1. Needs a key with the `write` permission.
 */
import { createTendrilClient, TendrilApiError, unwrap, type Connection, type ErrorBody } from "./index.js";

class Mismatch extends Error {
  override readonly name = "Mismatch";
}

function check(condition: boolean, message: string): asserts condition {
  if (!condition) {
    throw new Mismatch(message);
  }
}

function show(value: unknown): string {
  return JSON.stringify(value);
}

function fromEnv(name: string): string {
  const value = process.env[name];
  check(value !== undefined && value !== "", `set ${name}`);
  return value;
}

interface Summary {
  ok: true;
  connectors: number;
  connectionId: string;
  startStatus: number;
  labels: { started: string; renamed: string };
  listed: number;
  deleted: boolean;
  afterDelete: { status: number; code: string };
  unauthenticated: { status: number; code: string };
}

async function smoke(baseUrl: string, apiKey: string): Promise<Summary> {
  const client = createTendrilClient({ baseUrl, apiKey });

  const connectors = unwrap(await client.GET("/api/v1/connectors"));
  const telegram = connectors.find((connector) => connector.slug === "telegram");
  check(telegram !== undefined, `no telegram in the catalog: ${show(connectors.map((c) => c.slug))}`);
  check(telegram.authType === "api_key", `telegram authType is ${telegram.authType}, not api_key`);

  const label = `ts-smoke-${Date.now().toString(36)}`;
  const started = await client.POST("/api/v1/connections", { body: { connectorSlug: "telegram", label } });
  const { connection } = unwrap(started);
  check(started.response.status === 201, `start answered ${started.response.status}, not 201`);
  check(connection.connectorSlug === "telegram", `started a ${connection.connectorSlug} connection`);
  check(connection.label === label, `started with label ${show(connection.label)}, not ${show(label)}`);
  check(connection.status === "pending", `a new connection is ${connection.status}, not pending`);
  const id = connection.id;
  const byId = { params: { path: { id } } };

  const fetched: Connection = unwrap(await client.GET("/api/v1/connections/{id}", byId));
  check(fetched.id === id && fetched.label === label, `read back ${show(fetched)}`);

  const renamedLabel = `${label}-renamed`;
  const renamed = unwrap(
    await client.PATCH("/api/v1/connections/{id}", { ...byId, body: { label: renamedLabel } }),
  );
  check(renamed.id === id && renamed.label === renamedLabel, `rename answered ${show(renamed)}`);

  const connections = unwrap(await client.GET("/api/v1/connections"));
  const listed = connections.find((item) => item.id === id);
  check(listed !== undefined, `${id} is not in the list of ${connections.length}`);
  check(listed.label === renamedLabel, `listed as ${show(listed.label)}, not ${show(renamedLabel)}`);

  const deleted = unwrap(await client.DELETE("/api/v1/connections/{id}", byId));
  check(deleted.deleted, `delete answered ${show(deleted)}`);

  const gone = await client.GET("/api/v1/connections/{id}", byId);
  check(gone.response.status === 404, `read after delete answered ${gone.response.status}, not 404`);
  check(gone.error !== undefined, "read after delete answered no error body");
  const body: ErrorBody = gone.error;
  check(body.code === "NOT_FOUND", `read after delete answered code ${show(body.code)}`);
  check(body.error !== "", "read after delete answered an empty message");
  try {
    unwrap(gone);
    check(false, "unwrap returned data for a 404");
  } catch (error: unknown) {
    check(error instanceof TendrilApiError, `unwrap threw ${String(error)}`);
    check(error.status === 404 && error.code === "NOT_FOUND", `unwrap threw ${error.message}`);
  }

  const stranger = createTendrilClient({ baseUrl, apiKey: "not-a-tendril-key" });
  const refused = await stranger.GET("/api/v1/connections");
  check(refused.response.status === 401, `a wrong key answered ${refused.response.status}, not 401`);
  check(refused.error?.code === "UNAUTHORIZED", `a wrong key answered ${show(refused.error)}`);

  return {
    ok: true,
    connectors: connectors.length,
    connectionId: id,
    startStatus: started.response.status,
    labels: { started: label, renamed: renamedLabel },
    listed: connections.length,
    deleted: deleted.deleted,
    afterDelete: { status: gone.response.status, code: body.code },
    unauthenticated: { status: refused.response.status, code: refused.error.code },
  };
}

try {
  const summary = await smoke(fromEnv("TENDRIL_URL"), fromEnv("TENDRIL_API_KEY"));
  console.log(JSON.stringify(summary));
} catch (error: unknown) {
  const reason = error instanceof Mismatch || error instanceof TendrilApiError ? error.message : String(error);
  console.error(`tendril smoke failed: ${reason}`);
  process.exitCode = 1;
}
