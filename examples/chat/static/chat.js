/*
 * The Chat page: the server pairs this browser session with another one; messages typed here
 * go to the chat's channel and both partners see them, newest first. Every tab of the browser
 * shows the same chat. Needs thywill.js loaded first; no inline script.
 *
 * Test hooks: #chat-wrapper has class "chatting" while a chat is on and data-channel holds its
 * id.
 */
(function () {
  'use strict';

  var APPLICATION_ID = 'chat';
  var STATUS_TEXT = {
    connecting: 'Connecting...',
    connected: 'Connected',
    disconnected: 'Disconnected'
  };

  class ChatInterface extends Thywill.ApplicationInterface {
    constructor(ui) {
      super(APPLICATION_ID);
      this.ui = ui;
      this.chatting = false;
      this.channelId = null;
    }

    connecting() {
      if (this.ui.status.className !== 'disconnected') {
        this.showStatus('connecting');
      }
    }

    connected() {
      this.showStatus('connected');
      if (!this.chatting) {
        this.showNotice(this.ui.waiting);
      }
    }

    disconnected() {
      this.showStatus('disconnected');
      this.reset();
    }

    connectionFailure() {
      this.showStatus('disconnected');
      this.reset();
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
        case 'kicked':
          this.endChat();
          this.showNotice(this.ui.kickedNotice);
          break;
        default:
          break;
      }
    }

    /** A chat starts (or resumes after a reconnection); ignored while already chatting. */
    startChat(channelId) {
      if (this.chatting) {
        return;
      }
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

    endChat() {
      this.chatting = false;
      this.ui.wrapper.classList.remove('chatting');
      delete this.ui.wrapper.dataset.channel;
      this.ui.channel.hidden = true;
      this.ui.textarea.value = '';
      this.ui.textarea.disabled = true;
      this.ui.sendButton.disabled = true;
      this.ui.kickButton.disabled = true;
    }

    /** After a disconnection the page waits again (the chat resumes when it reconnects). */
    reset() {
      this.endChat();
      this.showNotice(this.ui.waiting);
    }

    sendText() {
      var text = this.ui.textarea.value;
      if (!this.chatting || !Thywill.isConnected || text.trim() === '') {
        return;
      }
      this.send({ action: 'message', message: text });
      this.ui.textarea.value = '';
      this.ui.textarea.focus();
    }

    kick() {
      if (!this.chatting) {
        return;
      }
      this.send({ action: 'kick' });
      this.endChat();
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

    /** Adds a message above the others (text only, never markup). */
    addMessage(text, className) {
      var div = document.createElement('div');
      div.className = className ? 'chat-message ' + className : 'chat-message';
      div.textContent = text;
      var first = this.ui.output.querySelector('.chat-message');
      this.ui.output.insertBefore(div, first);
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
      channelName: document.querySelector('#channel .channel')
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
