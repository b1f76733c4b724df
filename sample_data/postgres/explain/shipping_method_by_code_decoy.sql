SELECT id, name, price_cents, max_days FROM shipping_methods WHERE code = 'SHIP07';
