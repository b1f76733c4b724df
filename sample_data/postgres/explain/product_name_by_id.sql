SELECT name, sku FROM products WHERE id = 1234;
