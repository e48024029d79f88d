"""The built-in example graph ``refunds``: a refund an operator approves, edits or rejects.

propose -> review -> (issue_refund | reply) ; offline and deterministic.

* ``propose`` reads the order number and amount from the latest user message and proposes
  the action ``issue_refund`` with those arguments;
* ``review`` pauses the run with ``interrupt()`` and the payload agent-chat-ui and Agent Inbox
  render (LangGraph's ``HumanInterrupt``: ``action_request`` {action, args}, ``config`` of the
  responses allowed, ``description``); the run is resumed with a list of ``HumanResponse``:
  ``{"type": "accept"}`` issues the refund as proposed, ``{"type": "edit", "args": {"action":
  ..., "args": {...}}}`` issues it with the operator's arguments, ``{"type": "response", "args":
  "text"}`` declines and sends the operator's text, ``{"type": "ignore"}`` declines;
* ``issue_refund`` / ``reply`` append the final AI message.

Unlike ``support`` (compiled with ``interrupt_before``), the pause here is inside the node, so
the client sees the interrupt's value and answers it with ``Command(resume=...)``.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from langchain_core.messages import AIMessage, AnyMessage
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.types import Command, interrupt
from typing_extensions import TypedDict

ACTION = "issue_refund"
_ORDER = re.compile(r"\border\s*(?:#|no\.?|number)?\s*([A-Za-z0-9-]{3,})", re.IGNORECASE)
_AMOUNT = re.compile(r"(?:\$|€|£)\s*(\d+(?:\.\d{1,2})?)|(\d+(?:\.\d{1,2})?)\s*(?:usd|eur|gbp|dollars?|euros?)",
                     re.IGNORECASE)


class ActionRequest(TypedDict):
    action: str
    args: dict[str, Any]


class HumanInterruptConfig(TypedDict):
    allow_ignore: bool
    allow_respond: bool
    allow_edit: bool
    allow_accept: bool


class HumanInterrupt(TypedDict):
    """What agent-chat-ui and Agent Inbox render (the shape of langgraph.prebuilt's HumanInterrupt)."""

    action_request: ActionRequest
    config: HumanInterruptConfig
    description: str | None


class RefundState(TypedDict, total=False):
    messages: Annotated[list[AnyMessage], add_messages]
    proposal: ActionRequest
    decision: Literal["accepted", "edited", "responded", "ignored"]
    reply: str


def _latest_user_text(state: RefundState) -> str:
    for message in reversed(state.get("messages") or []):
        if message.type == "human":
            return message.content if isinstance(message.content, str) else str(message.content)
    return ""


async def propose(state: RefundState) -> RefundState:
    text = _latest_user_text(state)
    order = _ORDER.search(text)
    amount = _AMOUNT.search(text)
    value = float(amount.group(1) or amount.group(2)) if amount else 0.0
    return {"proposal": {"action": ACTION, "args": {
        "order_id": order.group(1) if order else "unknown", "amount": round(value, 2), "currency": "USD",
        "reason": text[:200]}}}


def _response(resume: Any) -> dict[str, Any]:
    """The first HumanResponse of the resume value (a list, as Agent Inbox sends it, or one object)."""
    first = resume[0] if isinstance(resume, list) and resume else resume
    if not isinstance(first, dict) or first.get("type") not in ("accept", "edit", "response", "ignore"):
        raise ValueError("resume with a list of HumanResponse: [{'type': 'accept'|'edit'|'response'|'ignore', "
                         "'args': ...}]")
    return first


async def review(state: RefundState) -> Command[Literal["issue_refund", "reply"]]:
    proposal = state["proposal"]
    args = proposal["args"]
    request: HumanInterrupt = {
        "action_request": {"action": proposal["action"], "args": dict(args)},
        "config": {"allow_ignore": True, "allow_respond": True, "allow_edit": True, "allow_accept": True},
        "description": (f"Refund {args['amount']:.2f} {args['currency']} for order {args['order_id']}? "
                        "Accept to issue it, edit the amount or order, respond to decline with a message, "
                        "or ignore to decline."),
    }
    answer = _response(interrupt([request]))
    kind = answer["type"]
    if kind == "accept":
        return Command(goto="issue_refund", update={"decision": "accepted"})
    if kind == "edit":
        edited = answer.get("args")
        if not isinstance(edited, dict) or not isinstance(edited.get("args"), dict):
            raise ValueError("an edit's args must be an action request: {'action': ..., 'args': {...}}")
        new_args = {**args, **edited["args"]}
        return Command(goto="issue_refund", update={
            "decision": "edited", "proposal": {"action": proposal["action"], "args": new_args}})
    if kind == "response":
        text = answer.get("args")
        return Command(goto="reply", update={"decision": "responded", "reply": str(text or "")})
    return Command(goto="reply", update={
        "decision": "ignored", "reply": f"Your refund request for order {args['order_id']} was declined."})


async def issue_refund(state: RefundState) -> RefundState:
    args = state["proposal"]["args"]
    amount = float(args.get("amount", 0))
    return {"messages": [AIMessage(content=f"Refund of {amount:.2f} {args.get('currency', 'USD')} issued "
                                           f"for order {args.get('order_id')}.")]}


async def reply(state: RefundState) -> RefundState:
    return {"messages": [AIMessage(content=state.get("reply", ""))]}


def build() -> StateGraph[RefundState]:
    builder: StateGraph[RefundState] = StateGraph(RefundState)
    builder.add_node("propose", propose)
    builder.add_node("review", review, destinations=("issue_refund", "reply"))
    builder.add_node("issue_refund", issue_refund)
    builder.add_node("reply", reply)
    builder.add_edge(START, "propose")
    builder.add_edge("propose", "review")
    builder.add_edge("issue_refund", END)
    builder.add_edge("reply", END)
    return builder


# Compiled without a checkpointer: the service attaches its shared checkpointer and store.
graph = build().compile()
