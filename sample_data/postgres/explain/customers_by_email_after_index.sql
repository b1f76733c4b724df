SELECT id, email, full_name, country, created_at FROM customers WHERE email = 'user123456@example.com';
