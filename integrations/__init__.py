"""Host adapters: memfold stores behind LangChain and LlamaIndex interfaces.

Each subpackage imports its host framework, so install the matching extra first
(``pip install 'memfold[langchain]'`` or ``pip install 'memfold[llamaindex]'``).

Examples:
    >>> from memfold.integrations.langchain import MemfoldChatMessageHistory
    >>> history = MemfoldChatMessageHistory("memory://", "thread-1")
    >>> history.messages
    []
"""
