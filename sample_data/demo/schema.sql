-- Schema and data of the demo. Loaded by generate.py with psql before logging starts.
-- Data is generated deterministically in SQL (no random()): the same rows on every run.
-- Sections are separated by lines "-- @database <name>"; generate.py runs each section in
-- that database.

-- @database shop
CREATE TABLE customers (
    id          bigint PRIMARY KEY,
    email       text NOT NULL,          -- deliberately NOT indexed: /customers/by-email scans
    full_name   text NOT NULL,
    country     char(2) NOT NULL,
    created_at  timestamptz NOT NULL,
    address     text NOT NULL
);
INSERT INTO customers
SELECT g,
       'user' || g || '@example.com',
       'Customer ' || g,
       (ARRAY['DE','FR','US','GB','BR','SG','JP','IN'])[1 + g % 8],
       timestamptz '2024-01-01 00:00:00+00' + (g % 365) * interval '1 day' + (g * 37 % 86400) * interval '1 second',
       g || ' Long Street, Apartment ' || (g % 500) || ', Postcode ' || lpad((g * 7 % 99999)::text, 5, '0') || ', Some City ' || (g % 997)
FROM generate_series(1, 300000) AS g;

CREATE TABLE categories (
    id    int PRIMARY KEY,
    name  text NOT NULL
);
INSERT INTO categories SELECT g, 'Category ' || g FROM generate_series(1, 20) AS g;

CREATE TABLE products (
    id           int PRIMARY KEY,
    sku          text NOT NULL UNIQUE,
    name         text NOT NULL,
    price_cents  int NOT NULL,
    category_id  int NOT NULL REFERENCES categories(id),
    description  text NOT NULL
);
INSERT INTO products
SELECT g,
       'SKU-' || lpad(g::text, 5, '0'),
       'Product ' || g,
       199 + (g * 7919 % 20000),
       1 + g % 20,
       repeat('A sturdy, well-made thing number ' || g || '. ', 6)
FROM generate_series(1, 5000) AS g;
CREATE INDEX products_category_idx ON products (category_id);

-- The decoy: a tiny table read with a WHERE on an unindexed column on every checkout.
-- A Seq Scan is the right plan here (one page).
CREATE TABLE shipping_methods (
    id           int PRIMARY KEY,
    code         text NOT NULL,
    name         text NOT NULL,
    price_cents  int NOT NULL,
    max_days     int NOT NULL
);
INSERT INTO shipping_methods
SELECT g, 'SHIP' || lpad(g::text, 2, '0'), 'Shipping method ' || g, 300 + g * 150, 1 + g % 7
FROM generate_series(1, 12) AS g;

CREATE TABLE orders (
    id               bigint PRIMARY KEY,
    customer_id      bigint NOT NULL REFERENCES customers(id),
    created_at       timestamptz NOT NULL,
    shipping_code    text NOT NULL,
    total_cents      int NOT NULL
);
INSERT INTO orders
SELECT g,
       1 + (g * 7907 % 300000),
       timestamptz '2024-01-01 00:00:00+00' + (g % 366) * interval '1 day' + (g * 53 % 86400) * interval '1 second',
       'SHIP' || lpad((1 + g % 12)::text, 2, '0'),
       1000 + (g * 104729 % 90000)
FROM generate_series(1, 20000) AS g;
CREATE INDEX orders_created_at_idx ON orders (created_at);

-- Items per order: N = 3 + (order_id * 7919) % 28, i.e. 3..30.
CREATE TABLE order_items (
    id                bigint PRIMARY KEY,
    order_id          bigint NOT NULL REFERENCES orders(id),
    product_id        int NOT NULL REFERENCES products(id),
    quantity          int NOT NULL,
    unit_price_cents  int NOT NULL
);
INSERT INTO order_items
SELECT row_number() OVER (ORDER BY o.id, k),
       o.id,
       1 + ((o.id * 31 + k * 977) % 5000),
       1 + (o.id + k) % 4,
       199 + (((o.id * 31 + k * 977) % 5000 + 1) * 7919 % 20000)
FROM orders AS o, generate_series(1, 3 + (o.id * 7919) % 28) AS k;
CREATE INDEX order_items_order_id_idx ON order_items (order_id);

ANALYZE customers, categories, products, shipping_methods, orders, order_items;

-- @database inventory
CREATE TABLE warehouses (
    id    int PRIMARY KEY,
    name  text NOT NULL,
    city  text NOT NULL
);
INSERT INTO warehouses VALUES
    (1, 'North', 'Hamburg'), (2, 'South', 'Munich'), (3, 'West', 'Cologne'),
    (4, 'East', 'Leipzig'), (5, 'Port', 'Rotterdam'), (6, 'Hub', 'Frankfurt');

-- Stock rows for every product except every 50th (those SKUs give inventory a 404).
CREATE TABLE stock (
    sku           text NOT NULL,
    warehouse_id  int NOT NULL REFERENCES warehouses(id),
    quantity      int NOT NULL,
    updated_at    timestamptz NOT NULL,
    PRIMARY KEY (sku, warehouse_id)
);
INSERT INTO stock
SELECT 'SKU-' || lpad(p::text, 5, '0'), w, (p * 13 + w * 7) % 120,
       timestamptz '2024-06-01 00:00:00+00' + (p % 30) * interval '1 hour'
FROM generate_series(1, 5000) AS p, generate_series(1, 6) AS w
WHERE p % 50 <> 0 AND (p + w) % 3 <> 0;

ANALYZE warehouses, stock;
