SELECT id, sku, name, price_cents, category_id, description FROM products WHERE id = 1234;
