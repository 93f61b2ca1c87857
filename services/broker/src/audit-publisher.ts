import { AuditEvent, Topics, topicName } from '@portcullis/contracts';
import { sendDurably } from '@portcullis/kafka';
import type { Producer } from 'kafkajs';

/**
 * Publishes audit events to Kafka and resolves only once they are durably accepted (acks=all).
 * The broker awaits this before it calls an upstream: no audit path, no tool call.
 */
export class AuditPublisher {
  readonly #producer: Producer;
  readonly #topic: string;

  constructor(producer: Producer, topicPrefix: string) {
    this.#producer = producer;
    this.#topic = topicName(topicPrefix, Topics.audit);
  }

  async publish(event: AuditEvent): Promise<void> {
    // Validate our own output: a malformed event would otherwise surface only in the dead-letter topic.
    const valid = AuditEvent.parse(event);
    await sendDurably(this.#producer, this.#topic, [{ key: valid.callId, value: JSON.stringify(valid) }]);
  }
}
