"""The built-in example graph ``support``: offline and deterministic.

classify -> draft -> compliance -> (human_approval ->) respond

* ``classify`` labels the latest user message (billing, technical, regulated, general);
* ``draft`` writes a reply for that label;
* ``compliance`` flags drafts about regulated topics (investing, returns, guarantees);
* flagged drafts go to ``human_approval``, before which the graph is compiled to pause
  (``interrupt_before``): an operator reviews the draft, may set ``approved_reply`` with
  ``update_state``, and resumes the run; other drafts go straight to ``respond``;
* ``respond`` appends the final AI message.

State uses LangGraph's message reducer, so any client shows the messages. To plug in a real
chat model, replace ``draft`` with a node that calls it (see README, "Your own graph").
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from langchain_core.messages import AIMessage, AnyMessage
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from typing_extensions import TypedDict

Category = Literal["billing", "technical", "regulated", "general"]

_REGULATED = re.compile(
    r"\b(invest(?:s|ed|ing|ments?|ors?)?|returns?|guarantee[sd]?|guaranteeing)\b", re.IGNORECASE
)
_BILLING = re.compile(r"\b(bill\w*|invoice\w*|refund\w*|charge\w*|payment\w*|price|pricing)\b", re.IGNORECASE)
_TECHNICAL = re.compile(r"\b(error\w*|bug\w*|crash\w*|login|password|install\w*|api|timeout\w*)\b",
                        re.IGNORECASE)

_REPLIES: dict[str, str] = {
    "billing": "Thanks for reaching out about billing. I have opened a ticket and our billing team "
               "will reply within one business day.",
    "technical": "Sorry for the trouble. Please try signing out and in again; if the problem "
                 "persists, reply with the exact error message and we will investigate.",
    "regulated": "We cannot give personal financial advice. Our products carry risk: past "
                 "performance does not promise future returns and nothing is guaranteed.",
    "general": "Thanks for your message. A member of our team will get back to you shortly.",
}


class SupportState(TypedDict, total=False):
    messages: Annotated[list[AnyMessage], add_messages]
    category: Category
    draft: str
    needs_approval: bool
    approved_reply: str | None
    reviewed_by: str | None


def _latest_user_text(state: SupportState) -> str:
    for message in reversed(state.get("messages") or []):
        if message.type == "human":
            return message.text if hasattr(message, "text") and isinstance(message.text, str) else str(
                message.content)
    return ""


async def classify(state: SupportState) -> SupportState:
    text = _latest_user_text(state)
    category: Category
    if _REGULATED.search(text):
        category = "regulated"
    elif _BILLING.search(text):
        category = "billing"
    elif _TECHNICAL.search(text):
        category = "technical"
    else:
        category = "general"
    return {"category": category, "approved_reply": None, "reviewed_by": None}


async def draft(state: SupportState) -> SupportState:
    return {"draft": _REPLIES[state.get("category", "general")]}


async def compliance(state: SupportState) -> SupportState:
    flagged = state.get("category") == "regulated" or bool(_REGULATED.search(state.get("draft", "")))
    return {"needs_approval": flagged}


async def route_after_compliance(state: SupportState) -> Literal["human_approval", "respond"]:
    return "human_approval" if state.get("needs_approval") else "respond"


async def human_approval(state: SupportState) -> SupportState:
    """Runs when the operator resumes; their ``approved_reply`` (if any) replaces the draft."""
    approved = state.get("approved_reply")
    return {"draft": approved} if approved else {}


async def respond(state: SupportState) -> SupportState:
    return {"messages": [AIMessage(content=state.get("draft", _REPLIES["general"]))]}


def build() -> StateGraph[SupportState]:
    builder: StateGraph[SupportState] = StateGraph(SupportState)
    builder.add_node("classify", classify)
    builder.add_node("draft", draft)
    builder.add_node("compliance", compliance)
    builder.add_node("human_approval", human_approval)
    builder.add_node("respond", respond)
    builder.add_edge(START, "classify")
    builder.add_edge("classify", "draft")
    builder.add_edge("draft", "compliance")
    builder.add_conditional_edges("compliance", route_after_compliance)
    builder.add_edge("human_approval", "respond")
    builder.add_edge("respond", END)
    return builder


# Compiled without a checkpointer: the service attaches its shared checkpointer and store.
graph = build().compile(interrupt_before=["human_approval"])
