SELECT id, sku, name, price_cents, description FROM products WHERE category_id = 7 ORDER BY id;
