"""What every HTTP API of Queenbee shares, and nothing else: who the caller is
(API keys and their authentication), how an error looks (OpenAI's envelope),
the async API base view, the OpenAPI helpers, and the request vocabulary that
more than one API speaks (model names, `gpu_filter`).

The bottom of the server's layers but one: every app may import it, it imports
no app (see `.importlinter` and DESIGN.md).
"""
