SELECT id, customer_id, shipping_code, total_cents FROM orders WHERE id = 4242;
