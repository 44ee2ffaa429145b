"""Sales per country: a typed CSV join and aggregation on Arrow tables, and the row join.

``sales.csv`` lines are ``customer,count``; ``customers.csv`` lines are
``customer,country``. The columnar path reads both with ``read_table`` (typed columns,
one Arrow table per byte range of the files), joins them on the customer — the small
customers table is broadcast to every task — and sums the counts per country with
``group_by().agg()``. The row path does the same with ``read_text``, ``map``, ``join``
and ``reduce_by_key``. Both run on the same worker processes and must agree.

Run it with ``python examples/columnar_join.py [ROWS]`` (default 200,000 sales; needs
pyarrow: ``pip install 'distsys[columnar]'``).
"""

from __future__ import annotations

import operator
import random
import sys
import tempfile
from pathlib import Path

from distsys.dataflow import open_session

COUNTRIES = [f"C{i:02d}" for i in range(20)]


def parse_sale(line: str) -> tuple[int, int]:
    customer, count = line.split(",")
    return int(customer), int(count)


def parse_customer(line: str) -> tuple[int, str]:
    customer, country = line.split(",")
    return int(customer), country


def country_count(row: tuple[int, tuple[int, str]]) -> tuple[str, int]:
    _, (count, country) = row
    return country, count


def write_inputs(folder: Path, rows: int, customers: int) -> tuple[Path, Path]:
    """Write the two files; a twentieth of the sales name no known customer."""
    rng = random.Random(7)
    sales, people = folder / "sales.csv", folder / "customers.csv"
    people.write_text("".join(f"{c},{rng.choice(COUNTRIES)}\n" for c in range(customers)))
    high = customers * 21 // 20
    sales.write_text(
        "".join(f"{rng.randrange(high)},{rng.randrange(1, 100)}\n" for _ in range(rows))
    )
    return sales, people


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    with tempfile.TemporaryDirectory() as tmp, open_session(workers=2, progress=False) as s:
        sales_file, customers_file = write_inputs(Path(tmp), rows, rows // 10)

        sales = s.read_table(
            sales_file, header=False, schema={"customer": "int64", "count": "int64"}
        )
        customers = s.read_table(
            customers_file, header=False, schema={"customer": "int64", "country": "string"}
        )
        joined = sales.join(customers, on="customer")
        totals = joined.group_by("country").agg(total=("count", "sum"))
        print(totals.explain().splitlines()[0], "...")
        columnar = dict(totals.to_rows().collect())

        pairs = s.read_text(sales_file).map(parse_sale)
        names = s.read_text(customers_file).map(parse_customer)
        row_join = pairs.join(names).map(country_count).reduce_by_key(operator.add)
        by_rows = dict(row_join.collect())

        best = max(columnar, key=columnar.__getitem__)
        print(f"{rows:,} sales, {len(columnar)} countries; most sold: {best}")
        print(f"columnar and row joins agree: {columnar == by_rows}")


if __name__ == "__main__":
    main()
