"""Order service: takes orders over REST, stores them with an outbox, publishes `order_created`."""
