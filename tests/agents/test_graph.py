"""Graph routing, the output gate, and conversation memory, over deterministic doubles."""

from __future__ import annotations

import threading

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from langgraph.checkpoint.memory import InMemorySaver

from agents.chat import ChatAgent, DoneEvent, RetractEvent, ThreadNotFound, TokenEvent
from agents.memory import checkpoint_serde, open_checkpointer
from configs.settings import AgentSettings
from tests.agents.conftest import disconnect_after_the_first_token

BENIGN = "Which port does the service use?"
HARMFUL = "How do I build a pipe bomb?"
UNSAFE_ANSWER_WORD = "FORBIDDEN"  # what the KeywordGuard double (conftest) flags in an answer
UNSAFE_ANSWER = f"Sure, here goes. Step one is {UNSAFE_ANSWER_WORD} material. Step two is more of it."


async def test_benign_request_goes_through_retrieval_generation_and_output_check(make_graph):
    graph, _guard, retriever, generator = make_graph()
    result = await ChatAgent(graph, "test").ask(BENIGN, "t1")

    assert result.route == ["safety_in", "retrieve", "generate", "safety_out"]
    assert set(result.node_seconds) == set(result.route) and all(s > 0 for s in result.node_seconds.values())
    assert result.answer == "Port 8000 [1]. Change it with api.port [2]."
    assert not result.refused and result.response_verdict is not None and result.response_verdict.safe
    assert retriever.queries == [BENIGN]
    assert [(d["index"], d["source"], d["title"]) for d in result.documents] == [
        (1, "chat-api.md", "The chat API"), (2, "configuration.md", "Configuration")]
    system, user = generator.prompts[0]
    assert system["role"] == "system" and '<document index="1" source="chat-api.md">' in system["content"]
    assert "listens on port 8000" in system["content"]
    assert user == {"role": "user", "content": BENIGN}


async def test_harmful_request_is_refused_without_retrieval_or_generation(make_graph):
    graph, _guard, retriever, generator = make_graph()
    result = await ChatAgent(graph, "test").ask(HARMFUL, "t1")

    assert result.route == ["safety_in", "refuse"] and set(result.node_seconds) == {"safety_in", "refuse"}
    assert result.refused and not result.request_verdict.safe and result.response_verdict is None
    assert result.answer and "pipe" not in result.answer
    assert retriever.queries == [] and generator.prompts == []


async def test_no_relevant_documents_still_answers_without_citations(make_graph):
    graph, _, _, generator = make_graph(chunks=[])
    result = await ChatAgent(graph, "test").ask(BENIGN, "t1")

    assert result.documents == [] and result.route[-1] == "safety_out"
    assert "<documents>" not in generator.prompts[0][0]["content"]


async def test_a_follow_up_is_searched_with_the_subject_of_the_turn_before(make_graph):
    async with open_checkpointer(AgentSettings(checkpointer="memory")) as saver:
        graph, _, retriever, _ = make_graph(checkpointer=saver, topic="port")
        agent = ChatAgent(graph, "test")
        await agent.ask(BENIGN, "t1")
        follow_up = await agent.ask("And how do I change it?", "t1")

    assert retriever.queries[1:] == ["And how do I change it? (port service)"]
    assert [d["source"] for d in follow_up.documents] == ["chat-api.md", "configuration.md"]


async def test_unsafe_answer_is_replaced_and_never_streamed_or_remembered(make_graph):
    saver = InMemorySaver(serde=checkpoint_serde())
    graph, _guard, _, generator = make_graph(answer=UNSAFE_ANSWER, checkpointer=saver)
    agent = ChatAgent(graph, "test")
    events = [event async for event in agent.stream(BENIGN, "t1")]

    shown = "".join(e.text for e in events if isinstance(e, TokenEvent))
    assert shown == "Sure, here goes."  # the checked first sentence; the flagged one never leaves
    assert [type(e) for e in events[-2:]] == [RetractEvent, DoneEvent]
    result = events[-1].result
    assert result.refused and not result.response_verdict.safe
    assert result.answer == events[-2].replacement and UNSAFE_ANSWER_WORD not in result.answer
    assert generator.pieces_sent < len(UNSAFE_ANSWER.split(" "))  # generation stopped at the flag
    state = await graph.aget_state({"configurable": {"thread_id": "t1"}})
    assert all(UNSAFE_ANSWER_WORD not in m.text for m in state.values["messages"])


async def test_without_sentence_checks_tokens_stream_raw_and_the_answer_is_retracted(make_graph):
    graph, guard, _, _ = make_graph(answer=UNSAFE_ANSWER, settings=AgentSettings(
        checkpointer="memory", check_stream_sentences=False))
    events = [event async for event in ChatAgent(graph, "test").stream(BENIGN, "t1")]

    assert UNSAFE_ANSWER_WORD in "".join(e.text for e in events if isinstance(e, TokenEvent))
    assert isinstance(events[-2], RetractEvent) and events[-1].result.refused
    assert guard.responses == [UNSAFE_ANSWER]  # one final check on the whole answer


async def test_safe_answer_streams_every_token_and_is_checked_once_per_sentence(make_graph):
    graph, guard, _, _ = make_graph()
    events = [event async for event in ChatAgent(graph, "test").stream(BENIGN, "t1")]

    tokens = [e.text for e in events if isinstance(e, TokenEvent)]
    assert "".join(tokens) == "Port 8000 [1]. Change it with api.port [2]."
    assert guard.responses == ["Port 8000 [1].", "Port 8000 [1]. Change it with api.port [2]."]
    assert isinstance(events[-1], DoneEvent) and not events[-1].result.refused


async def test_refusal_streams_as_a_token(make_graph):
    graph, *_ = make_graph()
    events = [event async for event in ChatAgent(graph, "test").stream(HARMFUL, "t1")]

    assert [type(e) for e in events] == [TokenEvent, DoneEvent]
    assert events[0].text == events[1].result.answer


async def test_memory_carries_earlier_turns_of_the_same_thread_only(make_graph, agent_settings):
    async with open_checkpointer(agent_settings) as saver:
        graph, _, _, generator = make_graph(checkpointer=saver)
        agent = ChatAgent(graph, "test")
        await agent.ask("My name is Ada.", "thread-a")
        second = await agent.ask(BENIGN, "thread-a")
        await agent.ask(BENIGN, "thread-b")

    assert second.route == ["safety_in", "retrieve", "generate", "safety_out"]  # per-turn fields reset
    turn_two = [m["content"] for m in generator.prompts[1][1:]]
    assert turn_two == ["My name is Ada.", "Port 8000 [1]. Change it with api.port [2].", BENIGN]
    assert [m["content"] for m in generator.prompts[2][1:]] == [BENIGN]


async def test_memory_survives_a_restart_on_the_same_sqlite_file(make_graph, sqlite_settings):
    async with open_checkpointer(sqlite_settings) as saver:
        graph, *_ = make_graph(checkpointer=saver)
        await ChatAgent(graph, "test").ask("My name is Ada.", "thread-a")

    async with open_checkpointer(sqlite_settings) as saver:  # a new process would do exactly this
        graph, _, _, generator = make_graph(checkpointer=saver)
        await ChatAgent(graph, "test").ask(BENIGN, "thread-a")

    assert sqlite_settings.sqlite_path.is_file()
    assert next(m["content"] for m in generator.prompts[0][1:]) == "My name is Ada."


async def test_history_window_limits_what_the_generator_sees(make_graph):
    async with open_checkpointer(AgentSettings(checkpointer="memory")) as saver:
        graph, _, _, generator = make_graph(checkpointer=saver,
                                            settings=AgentSettings(checkpointer="memory", history_turns=2))
        agent = ChatAgent(graph, "test")
        for turn in range(3):
            await agent.ask(f"question {turn}", "t")

    assert [m["role"] for m in generator.prompts[-1]] == ["system", "user", "assistant", "user"]
    assert generator.prompts[-1][-1]["content"] == "question 2"


async def test_tokens_reach_the_caller_while_generation_is_still_running(make_graph):
    graph, _, _, generator = make_graph(answer="First sentence. Second sentence.")
    first_token_seen = threading.Event()
    waited: list[bool] = []
    scripted = generator.stream

    def stream_waiting_for_the_caller(messages):
        for piece in scripted(messages):
            if piece == " Second":  # the first sentence has been released by now
                waited.append(first_token_seen.wait(timeout=5))
            yield piece

    generator.stream = stream_waiting_for_the_caller
    async for event in ChatAgent(graph, "test").stream(BENIGN, "t1"):
        if isinstance(event, TokenEvent):
            first_token_seen.set()

    assert waited == [True]


async def test_an_empty_generation_gets_the_templated_fallback_answer(make_graph, prompts):
    graph, guard, _, _ = make_graph(answer="")
    events = [event async for event in ChatAgent(graph, "test").stream(BENIGN, "t1")]

    assert [type(e) for e in events] == [TokenEvent, DoneEvent]
    assert events[0].text == events[1].result.answer == prompts.empty_answer
    assert guard.responses == [prompts.empty_answer]


async def test_closing_a_stream_early_stops_the_generation(make_graph):
    graph, _, _, generator = make_graph(answer="One. " + "word " * 200)
    assert await disconnect_after_the_first_token(graph, generator, BENIGN) < 10  # of 201 pieces

async def test_a_thread_belongs_to_the_owner_that_created_it(make_graph):
    graph, *_ = make_graph(checkpointer=InMemorySaver(serde=checkpoint_serde()))
    agent = ChatAgent(graph, "test")
    await agent.ask(BENIGN, "mem-1", owner="alice")

    with pytest.raises(ThreadNotFound):
        await agent.ask("What did I ask before?", "mem-1", owner="mallory")
    follow_up = await agent.ask("And how do I change it?", "mem-1", owner="alice")
    assert follow_up.thread_id == "mem-1"
    state = await graph.aget_state({"configurable": {"thread_id": "mem-1"}})
    assert len(state.values["messages"]) == 4  # mallory's question never entered alice's thread


async def test_a_stream_closed_mid_answer_leaves_no_orphan_question_in_memory(make_graph):
    graph, *_ = make_graph(checkpointer=InMemorySaver(serde=checkpoint_serde()))
    agent = ChatAgent(graph, "test")
    await agent.ask(BENIGN, "t1")

    stream = agent.stream("And how do I change it?", "t1")
    assert isinstance(await anext(stream), TokenEvent)  # the answer has started
    await stream.aclose()  # the client went away

    state = await graph.aget_state({"configurable": {"thread_id": "t1"}})
    assert [m.type for m in state.values["messages"]] == ["human", "ai"]
    assert state.values["messages"][0].text == BENIGN
    again = await agent.ask("And how do I change it?", "t1")  # the thread still works
    assert again.route[-1] == "safety_out"


async def test_a_stateless_turn_answers_after_the_callers_history_and_stores_nothing(make_graph):
    saver = InMemorySaver(serde=checkpoint_serde())
    graph, _, _, generator = make_graph(checkpointer=saver)
    history = [HumanMessage("My name is Ada."), AIMessage("Hello Ada.")]
    result = await ChatAgent(graph, "test").ask(BENIGN, None, history=history)

    assert result.thread_id is None and result.message_id
    assert [m["content"] for m in generator.prompts[0][1:]] == ["My name is Ada.", "Hello Ada.", BENIGN]
    assert list(saver.list(None)) == []
