"""The demo's reference data: the products the order service sells and the inventory stocks.

One list, so prices and stock can never name different SKUs. `LIMITED-EDITION` has little
stock on purpose: orders for more than there is are rejected by inventory.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True)
class Product:
    sku: str
    name: str
    unit_price: Decimal
    initial_stock: int


CATALOGUE: tuple[Product, ...] = (
    Product("KB-001", "Mechanical keyboard", Decimal("89.00"), 100_000),
    Product("MS-002", "Wireless mouse", Decimal("24.50"), 100_000),
    Product("MN-003", "27-inch monitor", Decimal("219.99"), 100_000),
    Product("HD-004", "Noise-cancelling headphones", Decimal("149.00"), 100_000),
    Product("CB-005", "USB-C cable", Decimal("9.90"), 100_000),
    Product("DK-006", "Docking station", Decimal("129.00"), 100_000),
    Product("WC-007", "Webcam", Decimal("59.00"), 100_000),
    Product("LIMITED-EDITION", "Limited-edition desk mat", Decimal("35.00"), 5),
)

CURRENCY = "EUR"
