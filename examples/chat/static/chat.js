/*
 * The Chat page: the server pairs this browser session with another one; messages typed here
 * go to the chat's channel and both partners see them, newest first. Every tab of the browser
 * shows the same chat. Needs thywill.js loaded first; no inline script.
 *
 * A lost connection does not end the chat on the page: the conversation stays, and what is
 * typed meanwhile is kept by thywill.js and sent after the reconnect (once). When the server
 * confirms the chat (`startChat` with the same channel), the messages sent meanwhile arrive
 * by replay, once and in order; a `startChat` for another channel (a new partner) starts a
 * fresh conversation. If messages could not be replayed, a notice line says so.
 *
 * The server remembers how many messages this browser session has sent (in the session's
 * data, on every member): the page asks (`stats`) when it connects and after each message,
 * and shows the count in #sent-count.
 *
 * Test hooks: #chat-wrapper has class "chatting" while a chat is on and data-channel holds its
 * id; #sent-count .count holds the count of messages sent.
 */
(function () {
  'use strict';

  var APPLICATION_ID = 'chat';
  /**
   * How long after a reconnect the page waits for the server to confirm the chat it kept
   * (`startChat`) before it gives the chat up and waits for a partner (ms).
   */
  var CONFIRM_TIMEOUT = 10000;
  /** The notice line shown when messages of the chat could not be replayed. */
  var LOST_TEXT = 'Some messages may be missing.';
  /** Most message lines shown; the oldest go beyond that (a replay may bring many). */
  var MAX_SHOWN = 500;
  var STATUS_TEXT = {
    connecting: 'Connecting...',
    connected: 'Connected',
    disconnected: 'Disconnected'
  };

  class ChatInterface extends Thywill.ApplicationInterface {
    constructor(ui) {
      super(APPLICATION_ID);
      this.ui = ui;
      /** Whether a chat is shown (also while it is kept over a lost connection). */
      this.chatting = false;
      /** The chat whose conversation is shown (kept after it ended, until a new one starts). */
      this.channelId = null;
      /** The chat was kept over a lost connection and the server has not confirmed it yet. */
      this.resuming = false;
      /** Gives the kept chat up when the server does not confirm it after a reconnect. */
      this.confirmTimer = null;
    }

    connecting() {
      if (this.ui.status.className !== 'disconnected') {
        this.showStatus('connecting');
      }
    }

    connected() {
      this.showStatus('connected');
      this.send({ action: 'stats' });
      if (this.resuming) {
        this.awaitConfirmation();
      } else if (!this.chatting) {
        this.showNotice(this.ui.waiting);
      }
    }

    disconnected() {
      this.showStatus('disconnected');
      this.suspend();
    }

    connectionFailure() {
      this.showStatus('disconnected');
      this.suspend();
    }

    /** Messages of the chat could not be replayed: say so in the conversation. */
    continuityLost() {
      if (this.channelId !== null) {
        this.addMessage(LOST_TEXT, 'continuity-lost');
      }
    }

    received(message) {
      var data = message.data || {};
      switch (data.action) {
        case 'startChat':
          this.startChat(String(data.channelId));
          break;
        case 'message':
          if (typeof data.message === 'string') {
            this.addMessage(data.message, '');
          }
          break;
        case 'disconnected':
          this.addMessage('Chat partner disconnected.', 'partner-disconnected');
          break;
        case 'reconnected':
          this.addMessage('Chat partner reconnected.', 'partner-reconnected');
          break;
        case 'stats':
          if (typeof data.sent === 'number') {
            this.ui.sentCount.textContent = String(data.sent);
            this.ui.sent.hidden = false;
          }
          break;
        case 'kicked':
          this.endChat();
          this.channelId = null; // a new chat, even with the same partner, starts afresh
          this.showNotice(this.ui.kickedNotice);
          break;
        default:
          break;
      }
    }

    /**
     * A chat starts, or the server confirms the chat after a reconnection (the same channel:
     * the conversation stays). Another channel means a new partner: a fresh conversation.
     */
    startChat(channelId) {
      this.stopWaitingForConfirmation();
      this.resuming = false;
      if (channelId !== this.channelId) {
        this.clearMessages();
      }
      this.chatting = true;
      this.channelId = channelId;
      this.showNotice(null);
      this.ui.channelName.textContent = channelId;
      this.ui.channel.hidden = false;
      this.ui.wrapper.classList.add('chatting');
      this.ui.wrapper.dataset.channel = channelId;
      this.ui.textarea.disabled = false;
      this.ui.sendButton.disabled = false;
      this.ui.kickButton.disabled = false;
    }

    /** The chat is over on this page (the conversation stays shown until a new one). */
    endChat() {
      this.stopWaitingForConfirmation();
      this.resuming = false;
      this.chatting = false;
      this.ui.wrapper.classList.remove('chatting');
      delete this.ui.wrapper.dataset.channel;
      this.ui.channel.hidden = true;
      this.ui.textarea.value = '';
      this.ui.textarea.disabled = true;
      this.ui.sendButton.disabled = true;
      this.ui.kickButton.disabled = true;
    }

    /**
     * The connection is lost: a chat stays on (the text box too: what is typed is sent after
     * the reconnect) until the server confirms it or the confirmation times out; Kick waits
     * for the connection. Without a chat the page waits for a partner again.
     */
    suspend() {
      this.stopWaitingForConfirmation();
      if (this.chatting) {
        this.resuming = true;
        this.ui.kickButton.disabled = true;
      } else {
        this.showNotice(this.ui.waiting);
      }
    }

    /**
     * Reconnected with a kept chat: the server confirms it with `startChat` (sent to every
     * new connection of a session that has a chat). Without that in CONFIRM_TIMEOUT, the chat
     * ended meanwhile and the page waits for a partner (a late `startChat` still resumes it).
     */
    awaitConfirmation() {
      var self = this;
      this.stopWaitingForConfirmation();
      this.confirmTimer = setTimeout(function () {
        self.confirmTimer = null;
        if (self.resuming && Thywill.isConnected) {
          self.endChat();
          self.showNotice(self.ui.waiting);
        }
      }, CONFIRM_TIMEOUT);
    }

    /** Cancels the wait for the server's confirmation of a kept chat. */
    stopWaitingForConfirmation() {
      if (this.confirmTimer !== null) {
        clearTimeout(this.confirmTimer);
        this.confirmTimer = null;
      }
    }

    /**
     * Sends the typed message to the chat. While disconnected thywill.js keeps it and sends
     * it after the reconnect; it is shown when it comes back from the channel, like every
     * message.
     */
    sendText() {
      var text = this.ui.textarea.value;
      if (!this.chatting || text.trim() === '') {
        return;
      }
      this.send({ action: 'message', message: text });
      this.send({ action: 'stats' });
      this.ui.textarea.value = '';
      this.ui.textarea.focus();
    }

    kick() {
      if (!this.chatting) {
        return;
      }
      if (this.resuming) {
        return; // the server has not confirmed the chat yet (Kick is disabled meanwhile)
      }
      this.send({ action: 'kick' });
      this.endChat();
      this.channelId = null; // a new chat, even with the same partner, starts afresh
      this.showNotice(this.ui.kickNotice);
    }

    newPartner() {
      this.showNotice(this.ui.waiting);
      this.send({ action: 'findPartner' });
    }

    /** Shows one notice (or none). */
    showNotice(notice) {
      [this.ui.waiting, this.ui.kickNotice, this.ui.kickedNotice].forEach(function (n) {
        n.hidden = n !== notice;
      });
    }

    /** Adds a message above the others (text only, never markup); at most MAX_SHOWN stay. */
    addMessage(text, className) {
      var div = document.createElement('div');
      div.className = className ? 'chat-message ' + className : 'chat-message';
      div.textContent = text;
      var first = this.ui.output.querySelector('.chat-message');
      this.ui.output.insertBefore(div, first);
      var shown = this.ui.output.querySelectorAll('.chat-message');
      for (var i = MAX_SHOWN; i < shown.length; i++) {
        shown[i].remove();
      }
    }

    clearMessages() {
      this.ui.output.querySelectorAll('.chat-message').forEach(function (m) {
        m.remove();
      });
    }

    showStatus(state) {
      this.ui.status.className = state;
      this.ui.status.textContent = STATUS_TEXT[state];
    }
  }

  function start() {
    var ui = {
      wrapper: document.getElementById('chat-wrapper'),
      status: document.getElementById('status'),
      textarea: document.querySelector('#control textarea'),
      sendButton: document.querySelector('#control button.send-button'),
      kickButton: document.querySelector('#control button.kick-button'),
      output: document.getElementById('chat-output'),
      waiting: document.getElementById('waiting'),
      kickNotice: document.getElementById('kick'),
      kickedNotice: document.getElementById('kicked'),
      channel: document.getElementById('channel'),
      channelName: document.querySelector('#channel .channel'),
      sent: document.getElementById('sent-count'),
      sentCount: document.querySelector('#sent-count .count')
    };
    var chat = new ChatInterface(ui);
    ui.sendButton.addEventListener('click', function () {
      chat.sendText();
    });
    ui.textarea.addEventListener('keydown', function (event) {
      if (event.key === 'Enter' && !event.shiftKey) {
        event.preventDefault();
        chat.sendText();
      }
    });
    ui.kickButton.addEventListener('click', function () {
      chat.kick();
    });
    ui.output.querySelectorAll('button.new-partner').forEach(function (b) {
      b.addEventListener('click', function () {
        chat.newPartner();
      });
    });
  }

  if (document.readyState === 'loading') {
    document.addEventListener('DOMContentLoaded', start);
  } else {
    start();
  }
})();
