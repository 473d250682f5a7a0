"""Turning a job's usage into credits. Pure arithmetic, no Django."""

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Rates:
    per_request: int = 0
    per_1k_prompt_tokens: int = 0
    per_1k_completion_tokens: int = 0
    per_image: int = 0


def cost(rates: Rates, *, prompt_tokens: int, completion_tokens: int, images: int) -> int:
    """Credits for one job; tokens are priced per thousand and rounded up."""
    tokens = prompt_tokens * rates.per_1k_prompt_tokens + completion_tokens * rates.per_1k_completion_tokens
    return rates.per_request + math.ceil(tokens / 1000) + images * rates.per_image


def worker_share(charged: int, share: float) -> int:
    """What a worker's owner earns from a charge (rounded down: never more than was paid)."""
    return math.floor(charged * share)


def per_1k(tokens: int, rate: float) -> int:
    """Credits for `tokens` at `rate` credits per thousand, rounded up like `cost` (a
    rate may be fractional; the rounding to 9 places keeps 0.1 × 1000 from becoming 101)."""
    return math.ceil(round(tokens * rate, 9) / 1000)
