"""Google Gen AI (Gemini, Imagen, Veo) through the official `google-genai` SDK, pinned at 3.4.0.

The package, by job: `client` (keys and the SDK's client), `errors` (SDK errors as ProviderErrors), `io`
(inputs as request parts, responses as Outputs with their token costs), `video` (Veo's long-running
operations) and `adapter` (`GoogleProvider`: the synchronous calls behind submit/poll, and Veo).

Three call shapes, chosen by the catalog entry's `config["method"]`:

- `generate_content` (Gemini text, and Gemini native image output such as gemini-2.5-flash-image) on
  the Gemini Developer API. One synchronous HTTP call.
- `generate_images` (Imagen 4). One synchronous `:predict` call. **Vertex mode only in 3.4.0.**
- `generate_videos` (Veo). A long-running operation: submit returns its name, `poll` asks for it with
  `operations.get` (Vertex: `:fetchPredictOperation`) until `done`. **Vertex mode only in 3.4.0.**

In google-genai 3.4.0 `models.generate_images` and `models.generate_videos` raise "only supported in
Gemini Enterprise Agent Platform mode" unless the client has `vertexai=True` (google/genai/models.py,
`_generate_images` / `_generate_videos`), so those two run on a Vertex AI client in express mode
(`vertexai=True` with an API key, no project), which calls `/v1beta1/publishers/google/models/...`.

Synchronous calls run behind submit/poll on a thread per call (generations.providers.jobs, the
thread-job registry shared with the local provider and the OpenAI, Anthropic and OpenRouter adapters):
`submit` reads the inputs (asset bytes included, so a bad input fails the submit), starts the call and
returns; `poll` says "running" until Google answers, then hands over the result once. Doing the call
inside `submit` would block the runner for the whole call: no heartbeat (the sweep re-queues a job
silent for STALE_RUNNING_AFTER), no cancel check, no deadline. A poll for an id this process does not
hold (the worker restarted mid-call) reports `lost`, and the runner submits again. Errors of a
synchronous call therefore arrive as a failed poll status (same code, message, retryable and
Retry-After as the ProviderError), not as an exception from `submit`.

Retries: the SDK's own are off (`HttpRetryOptions(attempts=1)`; google-genai retries nothing by
default anyway) because the pipeline already retries transient failures with bounded backoff; two
layers of retries would multiply the wait and the upstream charges.

Google has no queue position or progress for these calls and no cancel for operations in 3.4.0
(google/genai/operations.py has only `get`), so `cancel` returns False for Veo; the pipeline still marks
the generation canceled and releases its hold, but a Veo render already running is paid for upstream.
For a synchronous call `cancel` stops waiting (True); the request already sent is billed by Google.
"""
