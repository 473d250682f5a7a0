"""Grammars that constrain a generation: `response_format` and forced tool calls.

llama.cpp samples only tokens a GBNF grammar accepts, so an answer under
`json_object` always parses and one under `json_schema` matches the schema
(as far as llama.cpp's JSON-schema converter goes: formats and numeric ranges
are not enforced). The grammar is built from the request here, and checked
before it reaches the sampler: llama.cpp cannot report a bad grammar to a
sampler chain except by crashing.
"""

import json
from typing import Any


ANY_CHAR = r'char ::= [^"\\] |'
JSON_CHAR = r'char ::= [^"\\\x7F\x00-\x1F] |'


class BadGrammar(ValueError):
    """The request's schema cannot be turned into a grammar."""


def response_format_grammar(response_format: Any, *, vocab: Any) -> Any:
    """The LlamaGrammar that `response_format` asks for, or None for plain text."""
    if not isinstance(response_format, dict):
        return None
    kind = response_format.get("type")
    if kind == "json_object":
        # llama-cpp-python's extension: a schema beside json_object constrains it too.
        schema = response_format.get("schema")
        if isinstance(schema, dict):
            return schema_grammar(schema, vocab=vocab, field="response_format.schema")
        from llama_cpp.llama_grammar import JSON_GBNF, LlamaGrammar

        return checked(LlamaGrammar.from_string(JSON_GBNF), vocab=vocab, field="response_format")  # any object
    if kind == "json_schema":
        spec = response_format.get("json_schema") or {}
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if not isinstance(schema, dict):
            raise BadGrammar("response_format.json_schema.schema must be a JSON Schema object")
        return schema_grammar(schema, vocab=vocab, field="response_format.json_schema.schema")
    return None


def schema_grammar(schema: dict[str, Any], *, vocab: Any, field: str) -> Any:
    from llama_cpp.llama_grammar import LlamaGrammar, json_schema_to_gbnf

    try:
        gbnf = json_schema_to_gbnf(json.dumps(schema))
    except Exception as exc:  # the converter raises whatever it meets
        raise BadGrammar(f"{field} is not a JSON Schema this worker can enforce: {exc}") from None
    # The converter lets strings hold raw control characters, which JSON forbids
    # (json.loads refuses them): keep them escaped, as JSON_GBNF does.
    gbnf = gbnf.replace(ANY_CHAR, JSON_CHAR)
    return checked(LlamaGrammar.from_string(gbnf), vocab=vocab, field=field)


def checked(grammar: Any, *, vocab: Any, field: str) -> Any:
    """The grammar, once llama.cpp parsed it (a NULL sampler would crash the sampler chain)."""
    import llama_cpp

    sampler = llama_cpp.llama_sampler_init_grammar(vocab, grammar._grammar.encode("utf-8"), grammar._root.encode("utf-8"))
    if not sampler:
        raise BadGrammar(f"{field}: llama.cpp could not parse the grammar built from it")
    llama_cpp.llama_sampler_free(sampler)
    return grammar
