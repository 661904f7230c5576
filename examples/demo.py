"""memfold in one minute: write a thread with LangChain, read it with LlamaIndex in another process.

Run it (no server, no network, no model):

    python examples/demo.py                 # uses ./demo-memfold.db, recreated on each run
    python examples/demo.py /tmp/memo.db    # or any path you like

What it does, step by step:

1. Stores a short support conversation (system, user, an assistant tool call, the tool's result
   and the final answer) through LangChain's chat-history interface into an SQLite file.
2. Starts a second Python process (this script again, with ``--read``) that opens the same file
   through LlamaIndex's chat-store interface and prints the messages: the thread persisted, and
   a different framework reads it back with the tool call intact.
3. Runs a full-text search over the file with memfold's core API.
4. Runs a LangGraph graph with memfold's checkpoint saver on the same file: the graph proposes a
   refund and pauses for a human's approval; a third process resumes it with the approval; then
   this process travels back to the paused checkpoint and forks the run with a refusal instead.
   Both branches stay in the file.
5. Keeps a 300-turn conversation under a 2,000-token view: after each turn memfold's running
   summary folds the older messages (offline, with the extractive summarizer) into a summary
   saved beside the thread; every message stays in the file, and the summary is shown. Tokens
   are counted by the approximate counter (no tokenizer to load).
6. Gives two users' agents long-term memory in the same file: LangChain memory tools remember
   what Ana prefers, LlamaIndex's memory tool spec recalls it in another conversation, and Bo's
   tools cannot see any of it (the namespace comes from the run, never from the model).
7. Answers Ana's request for her data: everything the file records for her (her memories, and
   any thread or checkpoint that names her as its user) is exported to ``ana-export.jsonl``,
   versioned JSON lines that import into any backend with their ids and times.
8. Erases Ana everywhere in the file (her memories, and any thread or checkpoint that names her
   as its user): a dry run first for the audit log, then the erase; Bo's memories stay, and a
   late write for Ana is refused by the tombstone erase leaves.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

THREAD = "support-42"
RUN = "refund-42"  # the graph run's thread
LONG = "customer-300"  # the 300-turn conversation of step 5
DEFAULT_PATH = Path("demo-memfold.db")
console = Console()


def url_for(path: Path) -> str:
    """The memfold store URL of an SQLite file."""
    return f"sqlite:///{path}"


def write(path: Path) -> None:
    """Step 1: store the conversation through the LangChain adapter."""
    from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage

    from memfold.integrations.langchain import MemfoldChatMessageHistory

    conversation = [
        SystemMessage("You are a support agent for an online shop."),
        HumanMessage("Where is my order 42?"),
        AIMessage(
            "",
            tool_calls=[{"id": "call-1", "name": "lookup_order", "args": {"order_id": 42}}],
        ),
        ToolMessage(
            '{"order_id": 42, "status": "shipped", "eta": "Friday"}', tool_call_id="call-1"
        ),
        AIMessage("Order 42 has shipped and should arrive on Friday."),
    ]
    console.rule("[bold]1. LangChain writes")
    history = MemfoldChatMessageHistory(url_for(path), THREAD)  # a URL: it opens its own store
    history.add_messages(conversation)  # one append, in one transaction
    history.store.close()
    console.print(
        f"Process {os.getpid()} stored {len(conversation)} LangChain messages in thread "
        f"[cyan]{THREAD}[/] of [cyan]{escape(url_for(path))}[/] with MemfoldChatMessageHistory."
    )


def read(path: Path) -> None:
    """Step 2 (runs in a second process): read the thread back through the LlamaIndex adapter."""
    from llama_index.core.base.llms.types import ToolCallBlock

    from memfold.integrations.llama_index import MemfoldChatStore

    messages = MemfoldChatStore(url_for(path)).get_messages(THREAD)
    table = Table(title=f"Thread {THREAD} as LlamaIndex ChatMessages (reader pid {os.getpid()})")
    table.add_column("role")
    table.add_column("content", overflow="fold")
    table.add_column("tool call", overflow="fold")
    for message in messages:
        # Tool calls arrive as ToolCallBlocks; a tool result names its call in additional_kwargs.
        calls = [b for b in message.blocks if isinstance(b, ToolCallBlock)]
        call_text = ", ".join(f"{c.tool_name}({c.tool_kwargs}) [{c.tool_call_id}]" for c in calls)
        if "tool_call_id" in message.additional_kwargs:
            call_text = f"result of {message.additional_kwargs['tool_call_id']}"
        table.add_row(message.role.value, Text(message.content or ""), Text(call_text))
    console.print(table)
    console.print(f"{len(messages)} messages read back by a second process.", markup=False)


def search(path: Path, query: str) -> None:
    """Step 3: full-text search with the core API."""
    from memfold import open_store

    with open_store(url_for(path)) as store:
        hits = store.search(query)
    console.rule(f"[bold]3. Full-text search for {query!r}")
    console.print("A message matches when it holds every word of the query; best first.")
    for hit in hits:
        m = hit.message
        console.print(f"{hit.score:6.2f}  {hit.thread_id}  {m.role:<9}  {m.text}", markup=False)
    console.print(f"{len(hits)} hits.")


def refund_graph(saver: Any) -> Any:
    """A graph that proposes a refund, pauses for a human's decision, then acts on it."""
    from langchain_core.messages import AIMessage, HumanMessage
    from langgraph.graph import START, MessagesState, StateGraph
    from langgraph.types import interrupt

    def propose(state: MessagesState) -> dict[str, list[Any]]:
        return {"messages": [AIMessage("I can refund the $30 shipping fee of order 42.")]}

    def review(state: MessagesState) -> dict[str, list[Any]]:
        decision = interrupt("Refund $30 for order 42?")  # pauses here until resumed
        return {"messages": [HumanMessage(f"Supervisor: {decision}")]}

    def act(state: MessagesState) -> dict[str, list[Any]]:
        approved = "approve" in str(state["messages"][-1].content)
        text = "Refunded $30 to the card ending 4242." if approved else "No refund was made."
        return {"messages": [AIMessage(text)]}

    builder = StateGraph(MessagesState)
    builder.add_node("propose", propose).add_node("review", review).add_node("act", act)
    builder.add_edge(START, "propose").add_edge("propose", "review").add_edge("review", "act")
    return builder.compile(checkpointer=saver)


def start_run(path: Path) -> None:
    """Step 4a: run the graph until it pauses for approval."""
    from langchain_core.messages import HumanMessage

    from memfold.integrations.langgraph import MemfoldSaver

    console.rule("[bold]4. A LangGraph run paused for approval, resumed by another process")
    with MemfoldSaver.from_url(url_for(path)) as saver:
        graph = refund_graph(saver)
        config: Any = {"configurable": {"thread_id": RUN}}
        graph.invoke({"messages": [HumanMessage("My order 42 came late.")]}, config)
        state = graph.get_state(config)
        saver.release(RUN)  # hand the thread to whoever resumes it
    question = state.tasks[0].interrupts[0].value
    console.print(
        f"Process {os.getpid()} paused run {RUN} at {state.next}: {question}", markup=False
    )


def approve(path: Path) -> None:
    """Step 4b (runs in a third process): resume the paused run with an approval."""
    from langgraph.types import Command

    from memfold.integrations.langgraph import MemfoldSaver

    with MemfoldSaver.from_url(url_for(path)) as saver:
        config: Any = {"configurable": {"thread_id": RUN}}
        result = refund_graph(saver).invoke(Command(resume="approved"), config)
        saver.release(RUN)
    console.print(f"Process {os.getpid()} resumed it with an approval:", markup=False)
    for message in result["messages"]:
        console.print(f"  {message.type:<6} {message.content}", markup=False)


def time_travel(path: Path) -> None:
    """Step 4c: go back to the paused checkpoint and fork the run with a refusal."""
    from langchain_core.messages import HumanMessage

    from memfold.integrations.langgraph import MemfoldSaver

    with MemfoldSaver.from_url(url_for(path)) as saver:
        graph = refund_graph(saver)
        config: Any = {"configurable": {"thread_id": RUN}}
        history = list(graph.get_state_history(config))
        paused = next(s for s in history if s.next == ("review",))
        # A new branch from the paused checkpoint, as if the supervisor had declined.
        refusal = {"messages": [HumanMessage("Supervisor: declined")]}
        branch = graph.update_state(paused.config, refusal, as_node="review")
        fork = graph.invoke(None, branch)
        endings = [
            s.values["messages"][-1].content for s in graph.get_state_history(config) if not s.next
        ]  # the checkpoints where a branch ended
    console.print(
        f"Time travel: {len(history)} checkpoints stored; forked the paused one "
        f"({paused.config['configurable']['checkpoint_id'][:13]}...) with a refusal:",
        markup=False,
    )
    console.print(f"  {fork['messages'][-1].type:<6} {fork['messages'][-1].content}", markup=False)
    finished = [
        e for e in endings if e in ("Refunded $30 to the card ending 4242.", "No refund was made.")
    ]
    console.print(f"Both endings are kept in the file: {finished}", markup=False)


def long_chat(path: Path, turns: int = 300, budget: int = 2000) -> None:
    """Step 5: a long conversation kept under a token budget by a persisted running summary."""
    from memfold import Message, open_store
    from memfold.compaction import ApproximateCounter, Compactor, RunningSummary

    items = ["desk lamp", "office chair", "monitor arm", "keyboard", "standing desk"]
    cities = ["Lisbon", "Porto", "Madrid", "Lyon", "Turin"]
    days = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"]
    counter = ApproximateCounter()  # no tokenizer to load; overestimates English by ~10%
    console.rule(f"[bold]5. A {turns}-turn conversation under a {budget:,}-token view")
    with open_store(url_for(path)) as store:
        compactor = Compactor(store, RunningSummary(budget, counter=counter))
        largest = folds = 0
        for i in range(turns):
            item, city, day = items[i % 5], cities[i // 5 % 5], days[i // 25 % 5]
            order = 1000 + i
            store.append(
                LONG,
                [
                    Message(role="user", content=f"Please send order {order}, the {item}, "
                            f"to our {city} office by {day}; budget {40 + i % 60} euros."),
                    Message(role="assistant", content=f"Order {order} ({item}) will reach "
                            f"{city} on {day}, for {35 + i % 60} euros."),
                ],
            )  # fmt: skip
            done = compactor.compact(LONG)  # the view sent to the model this turn
            folds += done.folded
            largest = max(largest, counter.count_messages(done.view))
        stored = store.load(LONG)
        record = compactor.record(LONG)
    assert record is not None
    console.print(
        f"{turns} turns: {len(stored)} messages ({counter.count_messages(stored):,} tokens) kept "
        f"in the file; {folds} folds; largest view {largest:,} tokens (budget {budget:,}).",
        markup=False,
    )
    console.print(
        f"The view: the summary of the first {record.covered} messages, then the "
        f"{len(stored) - record.covered} newest. The summary:",
        markup=False,
    )
    console.print(Text(record.summary), style="green")


def long_term_memory(path: Path) -> None:
    """Step 6: memories one framework writes and another recalls, kept per user."""
    from memfold.integrations.langchain import memory_tools
    from memfold.integrations.llama_index import MemfoldToolSpec
    from memfold.memories import open_memory_store
    from memfold.recall.embedders import HashingEmbedder

    console.rule("[bold]6. Long-term memory across conversations, frameworks and users")
    # A real app would embed with LocalEmbedder() or its framework's model; the hashing
    # embedder keeps the demo offline and fast.
    with open_memory_store(url_for(path), embedder=HashingEmbedder()) as store:
        remember, recall, *_ = memory_tools(store, ("shop", "{user_id}", "memories"))
        ana: Any = {"configurable": {"user_id": "ana"}}
        for fact in (
            "Ana prefers refunds to store credit.",
            "Ana's orders go to the Turin office.",
        ):
            console.print(f"LangChain remember (ana): {remember.invoke({'content': fact}, ana)}")
        bo: Any = {"configurable": {"user_id": "bo"}}
        remember.invoke({"content": "Bo likes express shipping."}, bo)
        spec = MemfoldToolSpec(store, ("shop", "ana", "memories"))
        console.print("LlamaIndex recall (ana), another conversation, 'refund or credit?':")
        console.print(spec.recall("refund or store credit?", limit=1), markup=False)
        console.print(
            "LangChain recall (bo), the same question: Bo's agent sees only Bo's memories"
        )
        console.print(recall.invoke({"query": "refund or store credit?"}, bo), markup=False)


def export_user(path: Path) -> None:
    """Step 7: export everything recorded for one user."""
    from memfold.export import export_data

    console.rule("[bold]7. Exporting a user's data")
    target = path.with_name("ana-export.jsonl")
    with target.open("w", encoding="utf-8") as out:
        counts = export_data(url_for(path), out, tenant="shop", user="ana")
    console.print(
        f"Exported ana's data to {target.name}: {counts.threads} threads, "
        f"{counts.checkpoints} checkpoints and {counts.memories} memories.",
        markup=False,
    )


def erase_user(path: Path) -> None:
    """Step 8: erase one user from every store kind in the file."""
    from memfold import Erased, Subject, erase, open_store
    from memfold.checkpoints import open_checkpoint_store
    from memfold.memories import open_memory_store

    console.rule("[bold]8. Erasing a user everywhere")
    url = url_for(path)
    with (
        open_store(url) as threads,
        open_checkpoint_store(url) as checkpoints,
        open_memory_store(url) as memories,
    ):
        stores = [threads, checkpoints, memories]
        ana = Subject("shop", "ana")
        preview = erase(ana, stores, dry_run=True).as_dict()["counts"]
        console.print(f"Dry run for ana: {preview['memories']} memories would go.")
        counts = erase(ana, stores).as_dict()["counts"]
        erased = ", ".join(f"{n} {kind.replace('_', ' ')}" for kind, n in counts.items() if n)
        console.print(f"Erased ana: {erased or 'nothing'}.", markup=False)
        left = [r.text for r in memories.list_records(("shop",))]
        console.print(f"Left in tenant 'shop': {left}", markup=False)
        try:
            memories.put(("shop", "ana", "memories"), "a late write from a run in flight")
        except Erased:
            console.print("A late write for ana was refused: her tombstone keeps her erased.")


def main(argv: list[str]) -> int:
    """Run every step on a fresh file, or (with ``--read PATH`` or ``--approve PATH``) only the
    step a second process runs."""
    if argv[:1] == ["--read"]:
        read(Path(argv[1]))
        return 0
    if argv[:1] == ["--approve"]:
        approve(Path(argv[1]))
        return 0
    path = Path(argv[0]) if argv else DEFAULT_PATH
    for leftover in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        leftover.unlink(missing_ok=True)  # start fresh on each run

    write(path)

    console.rule("[bold]2. LlamaIndex reads, in a second process")
    command = [sys.executable, __file__, "--read", str(path)]
    console.print(
        f"Starting {Path(sys.executable).name} {Path(__file__).name} --read {path}", markup=False
    )
    sys.stdout.flush()  # keep this process's lines ahead of the child's
    subprocess.run(command, check=True)

    search(path, "shipped")

    start_run(path)
    sys.stdout.flush()
    subprocess.run([sys.executable, __file__, "--approve", str(path)], check=True)
    time_travel(path)
    long_chat(path)
    long_term_memory(path)
    export_user(path)
    erase_user(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
