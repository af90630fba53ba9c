"""Each line marked ERR must be rejected by mypy (the signature survives decoration)."""

from __future__ import annotations

from cachekit import cache


@cache(ttl=60)
def get_user(user_id: int) -> dict[str, int]:
    return {"id": user_id}


get_user("not an int")  # ERR arg-type
get_user(1, 2)  # ERR call-arg
x: str = get_user(1)  # ERR assignment


class Repo:
    @cache
    def get(self, item_id: int) -> dict[str, int]:
        return {"id": item_id}

    @cache
    @classmethod
    def table(cls, suffix: str) -> str:
        return suffix

    @cache
    @staticmethod
    def normalize(email: str) -> str:
        return email


Repo().get("1")  # ERR arg-type
Repo().get(1, 2)  # ERR call-arg
y: str = Repo().get(1)  # ERR assignment
Repo.table(1)  # ERR arg-type
Repo.normalize(b"x")  # ERR arg-type
