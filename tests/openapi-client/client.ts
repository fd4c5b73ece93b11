// A JSON client as a team outside .NET writes one: types generated from the served OpenAPI document by
// openapi-typescript (gen/schema.d.ts), calls made with openapi-fetch. Compiled with tsc against those types, so a
// document that says the wrong thing fails here before a call is made. Prints one JSON object: what the calls answered.
// Usage: node gen/dist/client.js BASE_URL PROVIDER_USCC
import createClient from "openapi-fetch";
import type { paths } from "./gen/schema.js";

const [baseUrl, provider] = process.argv.slice(2);
const api = createClient<paths>({ baseUrl });

function ok<T>(result: { data?: T; error?: unknown; response: Response }, what: string): T {
  if (result.data === undefined) {
    throw new Error(`${what}: ${result.response.status} ${JSON.stringify(result.error)}`);
  }
  return result.data;
}

const ping = ok(await api.GET("/v1/ping"), "Ping");
const year = ok(await api.GET("/v1/program-years/{year}", { params: { path: { year: 2026 } } }), "GetProgramYear");
const registered = ok(await api.POST("/v1/providers", {
  body: { requestId: `openapi-${provider}`, providerUscc: provider, name: "Generated-client compute", licences: ["IDC-B1-20260001"] },
}), "RegisterProvider");
const read = ok(await api.GET("/v1/providers/{providerUscc}", { params: { path: { providerUscc: provider } } }), "GetProvider");

// A misspelled field is refused, naming it, and nothing is done. (The cast is the misspelling: the generated type has
// no such field, which is the point of generating it.)
const misspelled = await api.POST("/v1/grants", {
  body: { requestId: `openapi-grant-${provider}`, providerUscc: provider, contractNo: "none", amountFen: "1000", dryrun: true } as never,
});
const refusal = misspelled.error as { code?: number; details?: { reason?: string; metadata?: Record<string, string> }[] } | undefined;

console.log(JSON.stringify({
  ping: ping !== undefined,
  fundedFen: year.fundedFen,
  fundedFenType: typeof year.fundedFen,
  registeredName: registered.name,
  readUscc: read.providerUscc,
  misspelledStatus: misspelled.response.status,
  misspelledReason: refusal?.details?.[0]?.reason,
  misspelledField: refusal?.details?.[0]?.metadata?.field,
}));
