"""Flows on methods (instance, class and static) and async flows with async tasks, as in
Prefect 3: the decorator stands above @classmethod / @staticmethod.

    python examples/sdk/methods_and_async.py

With nothing running it reports to a server embedded in the process, over
$FLOWRPC_HOME/flowrpc.db; with FLOWRPC_API_URL=127.0.0.1:4250 to a running server.
"""

import asyncio

from flowrpc import flow, task


class Report:
    title = "weekly"

    def __init__(self, owner: str) -> None:
        self.owner = owner

    @flow
    def build(self, pages: int = 2) -> str:
        return f"{self.title} report by {self.owner}, {pages} pages"

    @flow
    @classmethod
    def template(cls) -> str:
        return f"{cls.title} template"

    @flow
    @staticmethod
    def page_count(sections: int) -> int:
        return sections * 2


@task
async def fetch(source: str) -> int:
    await asyncio.sleep(0.01)
    return len(source)


@flow
async def fetch_all(sources: list[str]) -> int:
    sizes = await asyncio.gather(*(fetch(source) for source in sources))
    return sum(sizes)


if __name__ == "__main__":
    print(Report("ada").build())
    print(Report.template())
    print(Report.page_count(3))
    print("fetched", asyncio.run(fetch_all(["a", "bb", "ccc"])))
