"""`LLMSummarizer`: a memfold `Summarizer` backed by any LlamaIndex LLM.

Examples:
    >>> from llama_index.core.llms import MockLLM
    >>> from memfold import Message
    >>> from memfold.compaction import SummarizeRequest
    >>> summarizer = LLMSummarizer(MockLLM(max_tokens=3))
    >>> request = SummarizeRequest((Message(role="user", content="I fly to Lisbon"),), None, 50)
    >>> summarizer.summarize(request)
    'text text text'
"""

from __future__ import annotations

from llama_index.core.llms import LLM, ChatMessage, MessageRole

from memfold.compaction import (
    CONDENSE_PROMPT,
    EXTEND_PROMPT,
    SUMMARIZE_PROMPT,
    SummarizeRequest,
    render_prompt,
)

__all__ = ["LLMSummarizer"]


class LLMSummarizer:
    """Sends `memfold.compaction.render_prompt` as one user chat message; the reply is the
    summary.

    Args:
        llm: the LLM that writes summaries (a small, cheap one is usually enough).
        summarize: the prompt for a first summary (``{messages}``, ``{max_tokens}``).
        extend: the prompt that extends a summary (adds ``{previous}``).
        condense: the prompt that shortens a summary over budget.
    """

    def __init__(
        self,
        llm: LLM,
        *,
        summarize: str = SUMMARIZE_PROMPT,
        extend: str = EXTEND_PROMPT,
        condense: str = CONDENSE_PROMPT,
    ) -> None:
        self.llm = llm
        self.prompts = {"summarize": summarize, "extend": extend, "condense": condense}

    def _prompt(self, request: SummarizeRequest) -> list[ChatMessage]:
        text = render_prompt(request, **self.prompts)
        return [ChatMessage(role=MessageRole.USER, content=text)]

    def summarize(self, request: SummarizeRequest) -> str:
        """The LLM's summary for ``request``."""
        return (self.llm.chat(self._prompt(request)).message.content or "").strip()

    async def asummarize(self, request: SummarizeRequest) -> str:
        """Async `summarize`."""
        return ((await self.llm.achat(self._prompt(request))).message.content or "").strip()
