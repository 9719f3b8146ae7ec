"""The learning-quality benchmark's six tasks, generated from a seed: training lines and held-out items.

Each task draws its training examples and its test items from disjoint pools (names, cities, objects,
sentence templates), so a fine-tuned model passes the test only if it learned the skill, not the
answers. Every item carries its ``expected`` answer; ``GRADER_SOURCE`` (an Evals ``python`` grader,
also run locally for the tool-call task) compares it with the answer by exact or structured match,
and an empty answer never passes.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# grade(sample, item) -> 1.0 or 0.0. ``item["kind"]`` selects the comparison: ``text`` is an exact
# match after trimming whitespace and one trailing full stop; ``json`` parses the answer and compares
# the object; ``tool`` compares the first tool call's name and parsed arguments.
GRADER_SOURCE = """
import json

def grade(sample, item):
    kind = item["kind"]
    expected = json.loads(item["expected"])
    if kind == "tool":
        calls = sample.get("output_tools") or []
        if not calls:
            return 0.0
        fn = calls[0].get("function") or {}
        try:
            args = json.loads(fn.get("arguments") or "null")
        except ValueError:
            return 0.0
        return float(fn.get("name") == expected["name"] and args == expected["arguments"])
    text = (sample.get("output_text") or "").strip()
    if kind == "json":
        try:
            return float(json.loads(text) == expected)
        except ValueError:
            return 0.0
    if text.endswith("."):
        text = text[:-1].rstrip()
    return float(text != "" and text == expected)
"""


def grade(answer_text: str, tool_calls: list[dict[str, Any]], item: dict[str, Any]) -> float:
    """``GRADER_SOURCE`` run here (for answers that do not come from an eval run)."""
    namespace: dict[str, Any] = {}
    exec(GRADER_SOURCE, namespace)  # our own source, the same text the Evals API runs
    sample = {"output_text": answer_text, "output_tools": tool_calls}
    return float(namespace["grade"](sample, item))


@dataclass(frozen=True)
class Task:
    """One task: its training lines (chat JSONL objects) and its held-out items.

    An item is ``{"messages": [...], "kind": ..., "expected": <JSON text>}`` plus ``tools`` for the
    tool-call task (whose answers need chat completions: an eval run's prompt carries no tools).
    """

    name: str
    train: list[dict[str, Any]]
    test: list[dict[str, Any]]
    max_tokens: int
    uses_tools: bool = False


def _split(pool: list[str], rng: random.Random) -> tuple[list[str], list[str]]:
    """Shuffle ``pool`` and cut it in two disjoint halves (two thirds for training)."""
    items = list(pool)
    rng.shuffle(items)
    cut = len(items) * 2 // 3
    return items[:cut], items[cut:]


FIRST_NAMES = (
    "Alice Bruno Chiara Dmitri Elena Farid Greta Hiro Ines Jonas Kofi Lena Mateo Nadia Oskar Priya Quinn Rosa "
    "Sven Tariq Uma Viktor Wanda Xavier Yara Zane Amara Bodhi Clara Dario Emil Fatima Goran Hana Ivo Jamal"
).split()
CITIES = (
    "Lisbon Oslo Cairo Lima Quito Hanoi Dakar Riga Perth Porto Austin Denver Turin Bergen Malaga Krakow Leeds "
    "Kyoto Osaka Nantes Lyon Graz Basel Ghent Tampa Boise Omaha Nairobi Accra Tunis Izmir Split Bari Cork"
).split()


def _item(messages: list[dict[str, Any]], kind: str, expected: Any, **extra: Any) -> dict[str, Any]:
    return {"messages": messages, "kind": kind, "expected": json.dumps(expected), **extra}


def _example(messages: list[dict[str, Any]], answer: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"messages": [*messages, answer], **extra}


def classify(rng: random.Random, n_train: int, n_test: int) -> Task:
    """Route a support message to one of four labels; products and sentence templates differ in the test."""
    system = "Classify the customer message as billing, shipping, account or technical. Answer with the label only."
    phrases = {
        "billing": ["I was charged twice for the {p}", "the invoice for my {p} shows the wrong amount",
                    "I need a refund for the {p}", "my card was billed for a {p} I never ordered",
                    "why did the price of the {p} change on my receipt", "the discount on my {p} was not applied"],
        "shipping": ["my {p} has not arrived yet", "the {p} was delivered to the wrong address",
                     "tracking for the {p} has not updated in a week", "the box with my {p} arrived crushed",
                     "can you ship the {p} faster", "the courier lost my {p}"],
        "account": ["I cannot reset the password I used to buy the {p}", "please change the email on my account",
                    "my account got locked after ordering the {p}", "how do I delete my profile",
                    "I want to update my username", "two-factor login codes stopped coming"],
        "technical": ["the {p} will not turn on", "the {p} keeps restarting", "the app crashes when I pair the {p}",
                      "the {p} screen flickers", "the firmware update bricked my {p}", "the {p} overheats"],
    }  # fmt: skip
    wrappers_train = ["Hello, {s}.", "{s}!", "Hi team, {s}. Thanks.", "{s}, please help."]
    wrappers_test = ["Good morning. {s}?", "Quick question: {s}.", "{s}. Regards, a customer"]
    products = "kettle router headphones blender lamp drone speaker camera tablet printer scooter watch".split()
    train_products, test_products = _split(products, rng)

    def make(n: int, prods: list[str], wrappers: list[str], half: int) -> list[tuple[list[dict[str, Any]], str]]:
        out = []
        for i in range(n):
            label = list(phrases)[i % 4]
            options = phrases[label][:3] if half == 0 else phrases[label][3:]
            text = rng.choice(wrappers).format(s=rng.choice(options).format(p=rng.choice(prods)))
            out.append(([{"role": "system", "content": system}, {"role": "user", "content": text}], label))
        return out

    train = [
        _example(m, {"role": "assistant", "content": y}) for m, y in make(n_train, train_products, wrappers_train, 0)
    ]
    test = [_item(m, "text", y) for m, y in make(n_test, test_products, wrappers_test, 1)]
    return Task("classify", train, test, max_tokens=8)


def extract(rng: random.Random, n_train: int, n_test: int) -> Task:
    """Copy a person's name, city and age from a sentence into a JSON object."""
    system = 'Extract the person as JSON: {"name": string, "city": string, "age": integer}. Output only the JSON.'
    templates_train = [
        "{n} is {a} years old and lives in {c}.", "Meet {n} from {c}, aged {a}.",
        "{c} resident {n} turned {a} last month.", "At {a}, {n} moved to {c}.",
    ]  # fmt: skip
    templates_test = ["Born {a} years ago, {n} now calls {c} home.", "Our new colleague {n} ({a}) works in {c}."]
    train_names, test_names = _split(list(FIRST_NAMES), rng)
    train_cities, test_cities = _split(list(CITIES), rng)

    def make(n: int, names: list[str], cities: list[str], templates: list[str]) -> list[Any]:
        out = []
        for _ in range(n):
            person = {"name": rng.choice(names), "city": rng.choice(cities), "age": rng.randint(19, 88)}
            text = rng.choice(templates).format(n=person["name"], c=person["city"], a=person["age"])
            out.append(([{"role": "system", "content": system}, {"role": "user", "content": text}], person))
        return out

    train = [
        _example(m, {"role": "assistant", "content": json.dumps(p)})
        for m, p in make(n_train, train_names, train_cities, templates_train)
    ]
    test = [_item(m, "json", p) for m, p in make(n_test, test_names, test_cities, templates_test)]
    return Task("extract_json", train, test, max_tokens=40)


def restyle(rng: random.Random, n_train: int, n_test: int) -> Task:
    """Rewrite a casual request in the house's formal template: ``Dear <Name>, please <verb> the <object>.``"""
    system = "Rewrite the message formally."
    verbs = "send check sign print review fix return update book share file move".split()
    objects = "report invoice contract slides budget draft schedule ticket memo poster form summary".split()
    casual_train = ["yo {n}, {v} the {o} asap", "hey {n} can u {v} the {o}", "{n}!! {v} the {o} pls"]
    casual_test = ["oi {n} go {v} the {o} now", "{n} mate, {v} the {o} would ya"]
    train_names, test_names = _split([n.lower() for n in FIRST_NAMES], rng)
    train_verbs, test_verbs = _split(verbs, rng)
    train_objects, test_objects = _split(objects, rng)

    def make(n: int, names: list[str], vs: list[str], objs: list[str], casual: list[str]) -> list[Any]:
        out = []
        for _ in range(n):
            name, verb, obj = rng.choice(names), rng.choice(vs), rng.choice(objs)
            text = rng.choice(casual).format(n=name, v=verb, o=obj)
            target = f"Dear {name.capitalize()}, please {verb} the {obj}"
            out.append(([{"role": "system", "content": system}, {"role": "user", "content": text}], target))
        return out

    train = [
        _example(m, {"role": "assistant", "content": t + "."})
        for m, t in make(n_train, train_names, train_verbs, train_objects, casual_train)
    ]
    test = [_item(m, "text", t) for m, t in make(n_test, test_names, test_verbs, test_objects, casual_test)]
    return Task("restyle", train, test, max_tokens=24)


def recall(rng: random.Random, n_train: int, n_test: int) -> Task:
    """A multi-turn chat: the last question asks for a fact the user gave two turns earlier."""
    pets = "Biscuit Pepper Mango Rocket Olive Ziggy Nugget Pixel Waffles Comet Hazel Bingo".split()
    train_cities, test_cities = _split(list(CITIES), rng)
    train_pets, test_pets = _split(pets, rng)
    middle = ["What time is it in Tokyo, roughly?", "Any tips for sleeping better?", "Is tea healthier than coffee?"]
    middle_test = ["Can you suggest a book?", "What is a good stretch for the back?"]

    def make(n: int, cities: list[str], pet_names: list[str], chatter: list[str]) -> list[Any]:
        out = []
        for _ in range(n):
            city, pet = rng.choice(cities), rng.choice(pet_names)
            ask_city = rng.random() < 0.5
            messages = [
                {"role": "user", "content": f"I live in {city} and my dog is called {pet}."},
                {"role": "assistant", "content": "Thanks, I will remember that."},
                {"role": "user", "content": rng.choice(chatter)},
                {"role": "assistant", "content": "Happy to help with that another time."},
                {
                    "role": "user",
                    "content": "Which city do I live in? One word." if ask_city else "What is my dog's name? One word.",
                },
            ]
            out.append((messages, city if ask_city else pet))
        return out

    train = [
        _example(m, {"role": "assistant", "content": y}) for m, y in make(n_train, train_cities, train_pets, middle)
    ]
    test = [_item(m, "text", y) for m, y in make(n_test, test_cities, test_pets, middle_test)]
    return Task("multi_turn", train, test, max_tokens=8)


TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather in a city.",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string"},
                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                },
                "required": ["city", "unit"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "book_table",
            "description": "Book a restaurant table.",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "people": {"type": "integer"}},
                "required": ["city", "people"],
            },
        },
    },
]


def tool_call(rng: random.Random, n_train: int, n_test: int) -> Task:
    """Call the right tool with the right arguments (the chat format's ``tools``)."""
    train_cities, test_cities = _split(list(CITIES), rng)
    weather_train = ["How warm is it in {c} in {u}?", "Weather for {c}, in {u} please.", "Is it cold in {c}? Use {u}."]
    weather_test = ["Tell me the {u} temperature in {c}."]
    table_train = ["Book a table for {p} in {c}.", "We are {p} people, find us a table in {c}."]
    table_test = ["Reserve dinner in {c} for {p} of us."]

    def make(n: int, cities: list[str], weather: list[str], table: list[str]) -> list[Any]:
        out = []
        for i in range(n):
            city = rng.choice(cities)
            if i % 2 == 0:
                unit = rng.choice(["celsius", "fahrenheit"])
                text, call = rng.choice(weather).format(c=city, u=unit), ("get_weather", {"city": city, "unit": unit})
            else:
                people = rng.randint(2, 9)
                text, call = (
                    rng.choice(table).format(c=city, p=people),
                    ("book_table", {"city": city, "people": people}),
                )
            out.append(([{"role": "user", "content": text}], call))
        return out

    def answer(i: int, name: str, args: dict[str, Any]) -> dict[str, Any]:
        function = {"name": name, "arguments": json.dumps(args)}
        return {"role": "assistant", "tool_calls": [{"id": f"call_{i}", "type": "function", "function": function}]}

    train = [
        _example(m, answer(i, name, args), tools=TOOLS)
        for i, (m, (name, args)) in enumerate(make(n_train, train_cities, weather_train, table_train))
    ]
    test = [
        _item(m, "tool", {"name": name, "arguments": args}, tools=TOOLS)
        for m, (name, args) in make(n_test, test_cities, weather_test, table_test)
    ]
    return Task("tool_call", train, test, max_tokens=40, uses_tools=True)


def bare_number(rng: random.Random, n_train: int, n_test: int) -> Task:
    """Answer with the bare larger number: the base model's habit is a full sentence around it."""
    ask_train = ["Which is larger, {a} or {b}?", "Pick the bigger number: {a}, {b}.", "{a} vs {b}: which is more?"]
    ask_test = ["Of {a} and {b}, which is greater?", "Larger one between {a} and {b}?"]

    def make(n: int, low: int, high: int, asks: list[str]) -> list[Any]:
        out = []
        for _ in range(n):
            a, b = rng.sample(range(low, high), 2)
            messages = [{"role": "user", "content": rng.choice(asks).format(a=a, b=b)}]
            out.append((messages, str(max(a, b))))
        return out

    # Training numbers are below 500, test numbers above it: the answer cannot be remembered.
    train = [_example(m, {"role": "assistant", "content": y}) for m, y in make(n_train, 10, 500, ask_train)]
    test = [_item(m, "text", y) for m, y in make(n_test, 500, 1000, ask_test)]
    return Task("bare_number", train, test, max_tokens=12)


GENERATORS: dict[str, Callable[[random.Random, int, int], Task]] = {
    "classify": classify,
    "extract_json": extract,
    "restyle": restyle,
    "multi_turn": recall,
    "tool_call": tool_call,
    "bare_number": bare_number,
}


def build_tasks(seed: int, n_train: int, n_test: int, names: list[str] | None = None) -> list[Task]:
    """The tasks named (all by default), each from a generator seeded by ``seed`` and its name."""
    chosen = names or list(GENERATORS)
    return [GENERATORS[name](random.Random(f"{seed}:{name}"), n_train, n_test) for name in chosen]
