// Minimal pass-through Worker: the floor any Worker-based proxy pays.
// Forwards the request body, unparsed, to env.UPSTREAM (a chat completions
// URL, given with `--var UPSTREAM:<url>`) and streams the answer back.
// Used only by tests/bench/proxy.py (run with `wrangler dev --local`); never
// deployed.
export default {
  async fetch(request, env) {
    if (request.method !== "POST") {
      return new Response("POST only\n", { status: 405 });
    }
    const upstream = await fetch(env.UPSTREAM, {
      method: "POST",
      headers: {
        "content-type": request.headers.get("content-type") || "application/json",
        authorization: `Bearer ${env.UPSTREAM_KEY || "x"}`,
      },
      body: request.body,
    });
    return new Response(upstream.body, { status: upstream.status, headers: upstream.headers });
  },
};
