"""`ChatModelSummarizer`: a memfold `Summarizer` backed by any LangChain chat model.

Examples:
    >>> from langchain_core.language_models.fake_chat_models import FakeListChatModel
    >>> from memfold import Message
    >>> from memfold.compaction import SummarizeRequest
    >>> summarizer = ChatModelSummarizer(FakeListChatModel(responses=[" Ana flies to Lisbon. "]))
    >>> request = SummarizeRequest((Message(role="user", content="I fly to Lisbon"),), None, 50)
    >>> summarizer.summarize(request)
    'Ana flies to Lisbon.'
"""

from __future__ import annotations

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage

from memfold.compaction import CONDENSE_PROMPT, EXTEND_PROMPT, SUMMARIZE_PROMPT, render_prompt
from memfold.compaction.summarizers import SummarizeRequest

__all__ = ["ChatModelSummarizer"]


class ChatModelSummarizer:
    """Sends `memfold.compaction.render_prompt` as one human message; the reply is the summary.

    Args:
        model: the chat model that writes summaries (a small, cheap one is usually enough).
        summarize: the prompt for a first summary (``{messages}``, ``{max_tokens}``).
        extend: the prompt that extends a summary (adds ``{previous}``).
        condense: the prompt that shortens a summary over budget.
    """

    def __init__(
        self,
        model: BaseChatModel,
        *,
        summarize: str = SUMMARIZE_PROMPT,
        extend: str = EXTEND_PROMPT,
        condense: str = CONDENSE_PROMPT,
    ) -> None:
        self.model = model
        self.prompts = {"summarize": summarize, "extend": extend, "condense": condense}

    def _prompt(self, request: SummarizeRequest) -> list[HumanMessage]:
        return [HumanMessage(render_prompt(request, **self.prompts))]

    def summarize(self, request: SummarizeRequest) -> str:
        """The model's summary for ``request``."""
        return self.model.invoke(self._prompt(request)).text.strip()

    async def asummarize(self, request: SummarizeRequest) -> str:
        """Async `summarize`."""
        return (await self.model.ainvoke(self._prompt(request))).text.strip()
