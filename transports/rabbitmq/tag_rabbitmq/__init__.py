"""RabbitMQ transport for TAG (plugin entry point: tag_rabbitmq.plugin)."""
